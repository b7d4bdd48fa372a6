"""Tokenizers: characters, words, or byte pairs learned from the text itself."""

from __future__ import annotations

from fromzero.classic.corpus import train_val_text
from fromzero.classic.plots import plot_bars
from fromzero.lessons.course import Step
from fromzero.tokenizers import BPETokenizer, CharTokenizer, WordTokenizer
from fromzero.tokenizers import naive

TITLE = "Tokenizers: characters, words, byte pairs"
SENTENCE = "Once upon a time, a girl named Meera found a tiny robot."


def run(step: Step) -> None:
    step.say("""
        Before a model reads text, a **tokenizer** cuts it into pieces (tokens) and numbers them. The
        choice matters: it fixes the vocabulary size (the width of the model's output) and how many tokens
        a text takes (how far the model's context reaches). Three choices, trained on the stories:

        * **characters**: a tiny vocabulary, every text can be written, but texts are long;
        * **words**: short texts, but a huge vocabulary, and a word never seen becomes `[UNK]`;
        * **BPE** (byte-pair encoding, GPT-2's): start from the 256 bytes and repeatedly glue the most
          frequent neighbouring pair into a new token. Common words become one token, rare ones are spelt
          from pieces, and nothing is ever unknown.
    """)
    train, val = train_val_text("stories")
    train = train[: step.pick(30_000, len(train))]
    val = val[: step.pick(5_000, len(val))]
    step.show(naive.train, title="BPE training, the textbook loop (fromzero.tokenizers.naive.train)")
    tokenizers = {
        "characters": CharTokenizer.train(train, unk=True),
        "words": WordTokenizer.train(train),
        "BPE": BPETokenizer.train(train, vocab_size=step.pick(300, 1024)),
    }
    merges = sorted((rank, token) for token, rank in tokenizers["BPE"].ranks.items() if rank >= 256)
    shown = ", ".join(repr(token.decode("utf-8", errors="replace")) for _, token in merges[:12])
    step.figure("BPE: the first merges learned", shown)
    longest = max((token for _, token in merges), key=len).decode("utf-8", errors="replace")
    step.figure("BPE: the longest token learned", repr(longest))

    per_token = {}
    for name, tokenizer in tokenizers.items():
        ids = tokenizer.encode(SENTENCE)
        pieces = [tokenizer.decode([i]) for i in ids]
        step.figure(f"{name}: vocabulary", tokenizer.vocab_size)
        step.figure(f"{name}: the sentence in tokens", f"{len(ids)}: " + " | ".join(pieces))
        val_ids = tokenizer.encode(val)
        per_token[name] = len(val) / len(val_ids)
        step.figure(f"{name}: characters per token on unseen stories", round(per_token[name], 2))
    unknown = tokenizers["words"].encode(val).count(tokenizers["words"].unk_id)
    words = len(tokenizers["words"].encode(val))
    step.figure("words: unseen stories' words that are [UNK]", f"{unknown:,} of {words:,} ({unknown / words:.1%})")
    roundtrip = tokenizers["BPE"].decode(tokenizers["BPE"].encode(val)) == val
    step.figure("BPE: decode(encode(text)) gives the text back exactly", "yes" if roundtrip else "no")
    path = plot_bars(list(per_token), {"characters per token": list(per_token.values())},
                     step.picture("4_1_tokenizers.png"), title="how much text one token carries (unseen stories)",
                     ylabel="characters per token")
    step.saved(path)
    step.say("""
        The word tokenizer loses information (every `[UNK]`, and its spacing); characters lose nothing but
        make texts long. BPE sits in between, and it is what GPT-2, GPT-4 and most models use. The mini
        GPT of the next step reads characters anyway: at this size it learns spelling from scratch, and a
        small vocabulary keeps it small. `fromzero tokenizer train --vocab-size 2048` trains a bigger BPE.
    """)
