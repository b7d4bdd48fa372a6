"""A neural network that writes: the character MLP of Bengio et al. (2003), and its loss curve."""

from __future__ import annotations

import math

from fromzero.classic.char_mlp import (
    CharMLP,
    CharMLPConfig,
    TrainConfig,
    train_char_mlp,
)
from fromzero.classic.corpus import char_vocab, train_val_text
from fromzero.classic.ngram import NGramModel
from fromzero.classic.plots import plot_history
from fromzero.files import write_json
from fromzero.lessons.course import Step

TITLE = "The char network and its loss curve"


def run(step: Step) -> None:
    step.say("""
        Level 1's n-grams ran out of data: a context of 5 characters has been seen too rarely to count.
        A neural network does not look the context up, it **computes** from it. Each of the last k
        characters becomes a learned vector (its *embedding*); the vectors are joined and go through a
        hidden layer, which outputs one score per possible next character. Characters that behave alike
        get similar vectors, so what the network learns after `the` helps after `she` too.
    """)
    step.show(CharMLP.forward)
    train, val = train_val_text("stories")
    if step.quick:
        train, val = train[:20_000], val[:4_000]
    vocab = char_vocab(train, val)
    index = {ch: i for i, ch in enumerate(vocab)}
    train_ids, val_ids = [index[ch] for ch in train], [index[ch] for ch in val]
    config = CharMLPConfig(len(vocab), context=6, embed_dim=32, hidden=step.pick(64, 512))
    model = CharMLP(config, seed=0)
    c = config
    step.figure("embeddings: (V + 1 padding) x d", (c.vocab_size + 1) * c.embed_dim)
    step.figure("hidden layer: k d x h + h", c.context * c.embed_dim * c.hidden + c.hidden)
    step.figure("output layer: h x V + V", c.hidden * c.vocab_size + c.vocab_size)
    step.figure("parameters", model.num_params())
    step.figure("loss of a uniform guess: ln V", round(math.log(c.vocab_size), 4), "nats")

    epochs = step.pick(1, 5)
    step.say(f"Training: Adam on batches of 128 windows, {epochs} pass(es) over {len(train):,} characters.")
    history = train_char_mlp(model, train_ids, val_ids, TrainConfig(epochs=epochs))
    for record in history.records:
        step.figure(f"epoch {record['epoch']}: train loss / validation loss",
                    f"{record['train_loss']:.4f} / {record['val_loss']:.4f}", "nats per character")
    val_loss = min(history.series("val_loss"))
    step.figure("best validation loss", round(val_loss, 4), "nats per character")
    step.figure("validation perplexity", round(math.exp(val_loss), 3))
    kn = NGramModel(order=5, smoothing="kneser-ney").fit(train, vocab=vocab).perplexity(val)
    step.figure("5-gram Kneser-Ney on the same text (level 1)", round(kn, 3), "perplexity")
    step.saved(plot_history(history, step.picture("2_4_char_network_loss.png"), title="char network on the stories"))
    model.save(step.output("2.4"))
    write_json(step.output("2.4") / "vocab.json", vocab)
    sample = "".join(vocab[i] for i in model.sample([index[ch] for ch in "Once upon a time"], 200, 0.8, seed=0))
    step.figure("sample at T = 0.8", "Once upon a time" + sample)

    step.say(f"""
        The loss starts at ln V, a uniform guess over {c.vocab_size} characters, and falls fast, then
        slowly: the training loss keeps going down while the validation loss flattens, because the network
        starts to memorise the training stories. The flat part is the *loss floor* of this network on
        this much text.

        *Corrected figure:* the course this one grew from says the char network's loss settles at about
        0.89 nats. On text it has not read it cannot: 0.89 nats is a perplexity of {math.exp(0.89):.2f},
        as sure as a choice between two or three characters at every step, far better than the 5-gram's
        {kn:.2f}. Measured on the validation stories, the loss is {history.records[0]['val_loss']:.2f} nats
        after the first pass and stops near {val_loss:.2f} (perplexity {math.exp(val_loss):.2f}). The model is saved in `{step.output('2.4')}`: try
        `fromzero numpy-net generate --model {step.output('2.4')} --prompt "The "`.
    """)
