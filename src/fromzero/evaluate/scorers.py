"""Every language model of the course behind one question: how surprised is it by this text?

The n-gram counts of level 1, the NumPy network of level 2 and the GPTs of levels 3 to 5 predict
the next token in their own ways and over their own tokens (characters, words, BPE pieces). Each
scorer here turns a text into the same :class:`~fromzero.evaluate.perplexity.LMScore` (total
surprise, and the tokens, bytes and characters it was spread over), so bits per byte puts them
all in one table.

Which tokens are scored: an n-gram and the char-MLP predict every token, the first one from an
empty (padded) context. A GPT whose tokenizer has an end-of-text token reads that token first and
then predicts every token of the text, as GPT-2 itself was evaluated; without one, the first
token is only context, and its characters are left out of the byte and character counts.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

from fromzero.errors import InputError
from fromzero.evaluate.perplexity import LMScore, text_score, token_nll
from fromzero.tokenizers.base import EOT

Progress = Callable[[int, int], None]  # (done, total)


class Scorer(Protocol):
    name: str
    kind: str  # "n-gram", "char-MLP" or "GPT"

    def score(self, text: str, max_tokens: int | None = None, stride: int | None = None,
              batch_size: int = 8, on_progress: Progress | None = None) -> LMScore: ...


def _check_max_tokens(max_tokens: int | None) -> None:
    if max_tokens is not None and max_tokens < 1:
        raise InputError(f"--max-tokens must be at least 1, got {max_tokens}")


@dataclass
class GPTScorer:
    """A GPT (ours or the GPT-2 family, with its adapters) and its tokenizer."""

    name: str
    tuned: Any  # fromzero.finetune.tuned.TunedModel
    dtype: str = "float32"  # the matmuls' precision: float32 (exact), or bfloat16/float16 autocast (faster)
    kind: str = "GPT"

    def score(self, text: str, max_tokens: int | None = None, stride: int | None = None,
              batch_size: int = 8, on_progress: Progress | None = None) -> LMScore:
        _check_max_tokens(max_tokens)
        tokenizer = self.tuned.tokenizer
        ids = tokenizer.encode(text)
        sequence = [tokenizer.special_tokens[EOT], *ids] if EOT in tokenizer.special_tokens else ids
        if max_tokens is not None:
            sequence = sequence[:max_tokens + 1]
        scored = sequence[1:]
        if not scored:
            raise InputError(f"the text is too short to score with {self.name}: it needs two tokens or more")
        scored_text = text if len(scored) == len(ids) else tokenizer.decode(scored)
        from fromzero.training.precision import Precision

        device = str(next(self.tuned.model.parameters()).device)
        with Precision(self.dtype, device).autocast:
            nll, count = token_nll(self.tuned.model, sequence, stride, batch_size, on_window=on_progress)
        return text_score(nll, count, scored_text)


@dataclass
class NGramScorer:
    """A saved ``fromzero ngram`` run: counts over characters or a tokenizer's ids."""

    name: str
    model: Any  # fromzero.classic.ngram.NGramModel
    codec: Any  # fromzero.classic.runs.TokenCodec
    kind: str = "n-gram"

    def score(self, text: str, max_tokens: int | None = None, stride: int | None = None,
              batch_size: int = 8, on_progress: Progress | None = None) -> LMScore:
        _check_max_tokens(max_tokens)
        tokens = self.codec.encode(text)
        if max_tokens is not None and len(tokens) > max_tokens:
            tokens = tokens[:max_tokens]
            text = self.codec.decode(tokens)
        evaluation = self.model.evaluate(tokens)
        if on_progress is not None:
            on_progress(1, 1)
        return text_score(evaluation.cross_entropy * evaluation.n_tokens, evaluation.n_tokens, text)  # inf stays inf


@dataclass
class CharMLPScorer:
    """A saved ``fromzero numpy-net`` run: the level-2 network over characters."""

    name: str
    model: Any  # fromzero.classic.char_mlp.CharMLP
    vocab: list[str]
    kind: str = "char-MLP"

    def score(self, text: str, max_tokens: int | None = None, stride: int | None = None,
              batch_size: int = 8, on_progress: Progress | None = None) -> LMScore:
        from fromzero.classic.runs import encode_chars

        _check_max_tokens(max_tokens)
        if max_tokens is not None:
            text = text[:max_tokens]
        ids = encode_chars(text, self.vocab)
        if not ids:
            raise InputError("cannot score an empty text")
        loss = self.model.loss(ids)
        if on_progress is not None:
            on_progress(1, 1)
        return text_score(loss * len(ids), len(ids), text)


def load_scorer(spec: str, adapters: Sequence[tuple[str, str]] = (), name: str | None = None,
                device: str = "cpu", dtype: str = "float32") -> Scorer:
    """The scorer for ``spec``: an n-gram run folder, a char-MLP run folder, or any GPT ``load_tuned`` loads."""
    from fromzero.classic.runs import is_char_mlp_run, is_ngram_run, load_char_mlp_run, load_ngram_run

    name = name or Path(spec).name or spec
    folder = Path(spec).expanduser()
    if folder.is_dir() and is_ngram_run(folder):
        model, _, codec = load_ngram_run(folder)
        return NGramScorer(name, model, codec)
    if folder.is_dir() and is_char_mlp_run(folder):
        model, vocab = load_char_mlp_run(folder)
        return CharMLPScorer(name, model, vocab)
    from fromzero.finetune.tuned import load_tuned

    return GPTScorer(name, load_tuned(spec, adapters, template="none", device=device), dtype)
