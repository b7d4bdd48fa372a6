"""Using a trained translation model: translate texts, score them, and look at the alignment.

Translating runs :func:`fromzero.generation.seq2seq.generate_from_source` (greedy, or beam search
with ``num_beams``) on batches of sources. The alignment is read from the cross-attention: the
model's own translation is fed back through it once (teacher forcing), and row ``t`` of a layer's
weights says where in the source the decoder looked while writing target token ``t``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from fromzero.errors import InputError
from fromzero.evaluate.translation_metrics import translation_scores
from fromzero.generation import GenerationConfig
from fromzero.generation.seq2seq import generate_from_source
from fromzero.seq2seq.data import PairVocab, pad_sources
from fromzero.seq2seq.model_files import load_seq2seq
from fromzero.seq2seq.tasks import Pair


@dataclass
class Alignment:
    source: list[str]  # the source tokens' text
    target: list[str]  # the translation's tokens, ending with <eos>
    weights: torch.Tensor  # (n_head, target, source): each row sums to 1


class Translator:
    """A model and its vocabulary, ready to translate."""

    def __init__(self, model: torch.nn.Module, vocab: PairVocab, record: dict | None = None):
        self.model, self.vocab, self.record = model.eval(), vocab, record or {}
        self.device = next(model.parameters()).device

    @classmethod
    def load(cls, directory: str | Path, device: str = "cpu") -> Translator:
        return cls(*load_seq2seq(directory, device))

    @property
    def longest(self) -> int:
        return self.model.config.block_size

    def encode_source(self, text: str) -> list[int]:
        ids = self.vocab.encode(text.strip())
        if not ids:
            raise InputError("the text to translate is empty")
        if len(ids) > self.longest:
            raise InputError(f"the text is {len(ids)} tokens; this model reads at most {self.longest}: "
                             "split it into sentences")
        return ids

    def translate_ids(self, texts: Sequence[str], num_beams: int = 1, max_new_tokens: int | None = None,
                      batch_size: int = 64) -> list[list[int]]:
        """The target ids of each text (``bos`` first, ``eos`` last unless cut by the length limit)."""
        sources = [self.encode_source(text) for text in texts]
        config = GenerationConfig(max_new_tokens=max_new_tokens or self.longest - 1, num_beams=num_beams,
                                  eos_token_id=self.vocab.eos, pad_token_id=self.vocab.pad)
        out = []
        for start in range(0, len(sources), batch_size):
            src = pad_sources(sources[start:start + batch_size], self.vocab.pad).to(self.device)
            rows = generate_from_source(self.model, src, config, bos_id=self.vocab.bos)
            for row in rows.tolist():
                end = row.index(self.vocab.eos) + 1 if self.vocab.eos in row else len(row)
                out.append(row[:end])
        return out

    def translate(self, texts: Sequence[str], num_beams: int = 1, max_new_tokens: int | None = None,
                  batch_size: int = 64) -> list[str]:
        return [self.vocab.decode(ids) for ids in self.translate_ids(texts, num_beams, max_new_tokens, batch_size)]

    def evaluate(self, pairs: Sequence[Pair], num_beams: int = 1, bleu: bool = True) -> dict[str, float]:
        """Exact match, and BLEU and chrF unless ``bleu`` is False, of the translations of ``pairs``' sources."""
        hypotheses = self.translate([source for source, _ in pairs], num_beams=num_beams)
        return translation_scores(hypotheses, [target for _, target in pairs], bleu=bleu)

    @torch.no_grad()
    def alignment(self, text: str, layer: int = -1, num_beams: int = 1) -> Alignment:
        """Cross-attention of decoder layer ``layer`` while the model writes its translation of ``text``."""
        src = torch.tensor([self.encode_source(text)], device=self.device)
        target = self.translate_ids([text], num_beams=num_beams)[0]
        if target[-1] != self.vocab.eos:  # cut by the length limit: the last token still gets its row
            target = target + [self.vocab.eos]
        tgt_in = torch.tensor([target[:-1]], device=self.device)  # bos + translation: teacher forcing
        weights = self.model(src, tgt_in, need_weights=True).cross_attentions
        if weights is None:
            raise InputError("this model has no attention to plot (a GRU without attention): train with "
                             "--arch transformer or gru-attention")
        if not -len(weights) <= layer < len(weights):
            raise InputError(f"--layer must be between 0 and {len(weights) - 1} (or -1, the last), got {layer}")
        return Alignment(self.vocab.pieces(src[0].tolist()), self.vocab.pieces(target[1:]), weights[layer][0].float())
