"""From text pairs to the padded id batches a sequence-to-sequence model trains on.

**One vocabulary for both sides.** A tokenizer is trained on the training pairs, sources and targets
together (the paper shared one BPE vocabulary between English and German), so one embedding table
can serve the encoder, the decoder and the output layer. Three ids are added after the tokenizer's:
``pad`` fills batches, ``bos`` starts every target, ``eos`` ends it. They are never text, so no
sentence can spell them.

**Teacher forcing.** The decoder reads ``bos y1 y2 ... yn`` and must predict ``y1 y2 ... yn eos``:
at every position the input is the *true* previous token, not the model's own guess, so one
forward pass trains every position of the target at once.

**Padding.** Sources and targets are padded on the right with ``pad``. The encoder masks padded
source positions out of every attention; the loss skips padded target positions (``ignore_index``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from fromzero.errors import InputError
from fromzero.seq2seq.tasks import Pair
from fromzero.tokenizers import BPETokenizer, CharTokenizer, Tokenizer

EncodedPair = tuple[list[int], list[int]]


@dataclass
class PairVocab:
    """A tokenizer's ids, then ``pad``, ``bos`` and ``eos``."""

    tokenizer: Tokenizer

    @property
    def pad(self) -> int:
        return self.tokenizer.vocab_size

    @property
    def bos(self) -> int:
        return self.tokenizer.vocab_size + 1

    @property
    def eos(self) -> int:
        return self.tokenizer.vocab_size + 2

    @property
    def size(self) -> int:
        return self.tokenizer.vocab_size + 3

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text)

    def decode(self, ids: Sequence[int]) -> str:
        """The text of target ids: up to the first ``eos``, without ``bos`` or ``pad``."""
        text = []
        for i in ids:
            if i == self.eos:
                break
            if i < self.tokenizer.vocab_size:
                text.append(i)
        return self.tokenizer.decode(text)

    def pieces(self, ids: Sequence[int]) -> list[str]:
        """Each id as the text it stands for (``<bos>`` and ``<eos>`` named): the labels of an attention plot."""
        names = {self.pad: "<pad>", self.bos: "<bos>", self.eos: "<eos>"}
        return [names[i] if i in names else self.tokenizer.decode([i]) for i in ids]


def build_tokenizer(spec: str, pairs: Sequence[Pair]) -> Tokenizer:
    """``char`` (one id per character) or ``bpe:N`` (byte-level BPE of N tokens), learned from ``pairs``."""
    texts = [text for pair in pairs for text in pair]
    if spec == "char":
        # unseen characters at translation time become [UNK] instead of an error
        return CharTokenizer.train(texts, unk=True, name="seq2seq-char")
    if spec.startswith("bpe:"):
        try:
            size = int(spec[4:])
        except ValueError:
            size = 0
        if size <= 256:
            raise InputError(f"--tokenizer bpe:N needs N above 256 (the byte tokens), got {spec!r}")
        # the "marks" pattern keeps Devanagari words whole (GPT-2's cuts them at every vowel sign)
        return BPETokenizer.train("\n".join(texts), size, pattern="marks", special_tokens=(), name=f"seq2seq-bpe{size}")
    raise InputError(f"--tokenizer must be char or bpe:N (e.g. bpe:1000), got {spec!r}")


def encode_pairs(vocab: PairVocab, pairs: Sequence[Pair], max_len: int) -> tuple[list[EncodedPair], int]:
    """The pairs as ids, and how many were left out for being longer than ``max_len`` tokens.

    A target needs room for its ``bos`` (decoder input) or ``eos`` (label): at most ``max_len - 1`` tokens.
    """
    kept, dropped = [], 0
    for source, target in pairs:
        src, tgt = vocab.encode(source), vocab.encode(target)
        if not src or not tgt:
            raise InputError(f"the pair ({source!r}, {target!r}) has an empty side once tokenized")
        if len(src) > max_len or len(tgt) + 1 > max_len:
            dropped += 1
            continue
        kept.append((src, tgt))
    return kept, dropped


def collate(pairs: Sequence[EncodedPair], vocab: PairVocab) -> dict:
    """``src`` (B, S), ``tgt_in`` = bos + target, ``targets`` = target + eos (B, T), right-padded; and ``count``,
    the real target tokens the loss averages over."""
    if not pairs:
        raise InputError("cannot make a batch of no pairs")
    width_tgt = max(len(tgt) for _, tgt in pairs) + 1
    tgt_in = torch.full((len(pairs), width_tgt), vocab.pad, dtype=torch.long)
    targets = torch.full((len(pairs), width_tgt), vocab.pad, dtype=torch.long)
    for row, (_, t) in enumerate(pairs):
        tgt_in[row, :len(t) + 1] = torch.tensor([vocab.bos, *t])
        targets[row, :len(t) + 1] = torch.tensor([*t, vocab.eos])
    src = pad_sources([s for s, _ in pairs], vocab.pad)
    return {"src": src, "tgt_in": tgt_in, "targets": targets, "count": sum(len(t) + 1 for _, t in pairs)}


def pad_sources(sources: Sequence[list[int]], pad: int) -> torch.Tensor:
    """Source id lists as one right-padded (B, S) batch."""
    width = max(map(len, sources))
    return torch.tensor([ids + [pad] * (width - len(ids)) for ids in sources], dtype=torch.long)
