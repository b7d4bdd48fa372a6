"""Embeddings and positions: a token becomes a vector, and a second vector says where it sits."""

from __future__ import annotations

import torch

from fromzero.classic.corpus import train_val_text
from fromzero.classic.plots import plot_heatmaps
from fromzero.lessons.course import Step
from fromzero.nn import LearnedPositionalEmbedding, SinusoidalPositionalEncoding, TokenEmbedding
from fromzero.tokenizers import CharTokenizer

TITLE = "Embeddings and positions"
WIDTH = 64  # numbers per vector (n_embd)


def run(step: Step) -> None:
    step.say("""
        A network computes with numbers, not letters. So every token id picks one row of a table of
        vectors, the **token embedding**. The table starts random and is learned: tokens used in similar
        places end up with similar vectors. Here the tokens are the characters of the stories.
    """)
    train, _ = train_val_text("stories")
    tokenizer = CharTokenizer.train(train)
    torch.manual_seed(0)
    table = TokenEmbedding(tokenizer.vocab_size, WIDTH)
    ids = torch.tensor(tokenizer.encode("the cat"))
    vectors = table(ids)
    step.figure("vocabulary (characters)", tokenizer.vocab_size)
    step.figure("embedding table", f"{tuple(table.weight.shape)} = {table.weight.numel():,} learned numbers")
    step.figure("'the cat' becomes", f"{len(ids)} ids {ids.tolist()} -> vectors of shape {tuple(vectors.shape)}")
    step.figure("the vector of 't' is row 't' of the table", _yes(torch.equal(vectors[0], table.weight[ids[0]])))
    step.figure("both 't's of 'the cat' get the same vector", _yes(torch.equal(vectors[0], vectors[6])))

    step.say("""
        Attention (the next steps) compares every token with every other one and does not care about
        their order: "the cat" and "cat the" would look the same. So a **position vector** is added to
        each token vector. There are two ways to make one:

        * **sinusoidal** (the original Transformer): fixed sine and cosine waves of many speeds. Nothing
          to learn, and the vector of position p + k is a fixed rotation of that of p, so "3 to the left"
          looks the same everywhere;
        * **learned** (GPT-2): a second table with one row per position, learned like the token table.
          It can only handle as many positions as it has rows: the model's context length.
    """)
    step.show(SinusoidalPositionalEncoding.forward)
    positions = step.pick(32, 128)
    sinusoidal = SinusoidalPositionalEncoding(WIDTH)(torch.arange(positions))
    learned = LearnedPositionalEmbedding(positions, WIDTH)
    torch.nn.init.normal_(learned.weight, std=0.02)  # as a GPT starts it
    step.figure("sinusoidal: parameters", sum(p.numel() for p in SinusoidalPositionalEncoding(WIDTH).parameters()))
    step.figure("learned: parameters", learned.weight.numel(), f"({positions} positions x {WIDTH})")
    step.figure("sinusoidal position 0 starts", [round(v, 3) for v in sinusoidal[0, :4].tolist()])
    step.figure("sinusoidal position 1 starts", [round(v, 3) for v in sinusoidal[1, :4].tolist()])

    similarity = sinusoidal @ sinusoidal.T  # how alike two positions' vectors are
    offset = 3
    shifted = torch.stack([similarity[p, p + offset] for p in range(positions - offset)])
    step.figure(f"sinusoidal: likeness of p and p+{offset}, for every p", f"{shifted.mean():.4f}")
    step.figure("spread of that likeness over all p", float(shifted.max() - shifted.min()))
    distances = torch.cdist(sinusoidal, sinusoidal) + torch.eye(positions) * 1e9
    step.figure("sinusoidal: closest two different positions are this far apart", round(float(distances.min()), 3))

    path = plot_heatmaps([
        ("sinusoidal (fixed)", sinusoidal.numpy()),
        ("learned (at the start: random)", learned.weight.detach().numpy()),
        ("sinusoidal: likeness of two positions", similarity.numpy()),
    ], step.picture("3_1_positions.png"), xlabel="dimension / position", ylabel="position", columns=3, cmap="RdBu")
    step.saved(path)
    step.say("""
        In the picture, each row is one position. The sinusoidal waves are slow on the right and fast on
        the left; the likeness of two positions depends only on how far apart they are (the stripes run
        along the diagonal). The learned table starts as noise and finds its own pattern during training
        (level 4 trains one).
    """)


def _yes(truth: bool) -> str:
    return "yes" if truth else "no"
