"""What to generate and how: one dataclass holding every decoding setting.

The names, meanings and defaults follow Hugging Face ``transformers.GenerationConfig`` so a setting
learned here means the same thing there. In particular nothing is sampled unless ``do_sample=True``:
the default is greedy decoding, and temperature / top-k / top-p / min-p then have no effect.
One deliberate extension: ``temperature=0`` means greedy (transformers raises an error instead),
because "zero temperature" is how most people think about deterministic output.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from fromzero.errors import InputError


# Scores are divided by the temperature and by the repetition penalty. transformers accepts any value
# above 0, but below about 1e-36 a float32 score overflows to infinity and sampling breaks (NaN
# probabilities); 1e-6 keeps every practical setting and turns the absurd ones into a clear error.
MIN_DIVISOR = 1e-6


@dataclass
class GenerationConfig:
    """Decoding settings; call :meth:`validate` (``generate`` does) to get clear errors early."""

    max_new_tokens: int = 20
    """How many tokens to add after the prompt at most (fewer if every row stops early)."""
    do_sample: bool = False
    """Sample from the (filtered) distribution instead of taking the most likely token."""
    temperature: float = 1.0
    """Divide logits by this before sampling: < 1 sharper, > 1 flatter, 0 = greedy."""
    top_k: int | None = 50
    """Keep only the k most likely tokens when sampling (None or 0 = keep all)."""
    top_p: float = 1.0
    """Keep the smallest set of tokens whose probabilities sum to at least top_p (nucleus sampling)."""
    min_p: float | None = None
    """Drop tokens whose probability is below min_p times the top token's probability."""
    repetition_penalty: float = 1.0
    """> 1 makes every token already in the sequence (prompt included) less likely."""
    no_repeat_ngram_size: int = 0
    """Forbid any n-gram of this size from appearing twice (0 = off)."""
    num_beams: int = 1
    """Beam search width (1 = no beam search)."""
    length_penalty: float = 1.0
    """Beam scores are divided by length ** length_penalty: > 0 favours longer sequences."""
    early_stopping: bool | Literal["never"] = False
    """Beam search stop rule: True stops once num_beams hypotheses are finished; False stops when no
    better one is likely (a heuristic); "never" stops only when no better one is possible."""
    num_return_sequences: int = 1
    """Sequences returned per prompt: the best beams, or independent samples."""
    stop_strings: list[str] = field(default_factory=list)
    """Stop a row once its generated text contains one of these (needs a tokenizer)."""
    eos_token_id: int | list[int] | None = None
    """Token id(s) that end a row; the row is padded with pad_token_id afterwards."""
    pad_token_id: int | None = None
    """Fills finished rows; defaults to the (first) eos token, like transformers."""
    seed: int | None = None
    """Seed for sampling; None uses torch's global random generator."""

    @property
    def eos_ids(self) -> list[int]:
        """The end-of-sequence ids as a list (possibly empty)."""
        if self.eos_token_id is None:
            return []
        if isinstance(self.eos_token_id, int):
            return [self.eos_token_id]
        return list(self.eos_token_id)

    @property
    def fill_id(self) -> int | None:
        """Token written after a row has finished: pad, else the first eos, else None."""
        if self.pad_token_id is not None:
            return self.pad_token_id
        return self.eos_ids[0] if self.eos_ids else None

    @property
    def samples(self) -> bool:
        """True when tokens are drawn at random (``do_sample`` and a temperature above 0)."""
        return self.do_sample and self.temperature > 0

    def validate(self) -> GenerationConfig:
        """Raise :class:`InputError` for an impossible setting; return self so calls can chain.

        Messages name each setting and its ``fromzero generate`` flag, so they help both callers.
        """
        _check(_is_int(self.max_new_tokens) and self.max_new_tokens >= 1,
               f"{with_flag('max_new_tokens')} must be an integer >= 1, got {self.max_new_tokens!r}")
        _check(_is_number(self.temperature) and (self.temperature == 0 or self.temperature >= MIN_DIVISOR),
               f"{with_flag('temperature')} must be 0 (greedy) or >= {MIN_DIVISOR:g}, got {self.temperature!r}")
        _check(self.top_k is None or (_is_int(self.top_k) and self.top_k >= 0),
               f"{with_flag('top_k')} must be a non-negative integer or None, got {self.top_k!r}")
        _check(_is_number(self.top_p) and 0 < self.top_p <= 1,
               f"{with_flag('top_p')} must be in (0, 1], got {self.top_p!r}")
        _check(self.min_p is None or (_is_number(self.min_p) and 0 <= self.min_p <= 1),
               f"{with_flag('min_p')} must be in [0, 1] or None, got {self.min_p!r}")
        _check(_is_number(self.repetition_penalty) and self.repetition_penalty >= MIN_DIVISOR,
               f"{with_flag('repetition_penalty')} must be >= {MIN_DIVISOR:g} (1 = off), got "
               f"{self.repetition_penalty!r}")
        _check(_is_int(self.no_repeat_ngram_size) and self.no_repeat_ngram_size >= 0,
               f"{with_flag('no_repeat_ngram_size')} must be an integer >= 0, got {self.no_repeat_ngram_size!r}")
        _check(_is_int(self.num_beams) and self.num_beams >= 1,
               f"{with_flag('num_beams')} must be an integer >= 1, got {self.num_beams!r}")
        _check(_is_number(self.length_penalty),
               f"{with_flag('length_penalty')} must be a number, got {self.length_penalty!r}")
        _check(self.early_stopping in (True, False, "never"),
               f"early_stopping must be True, False or 'never', got {self.early_stopping!r}")
        _check(_is_int(self.num_return_sequences) and self.num_return_sequences >= 1,
               f"{with_flag('num_return_sequences')} must be an integer >= 1, got {self.num_return_sequences!r}")
        if self.num_beams > 1:
            _check(self.num_return_sequences <= self.num_beams,
                   f"{with_flag('num_return_sequences')} {self.num_return_sequences} cannot exceed "
                   f"{with_flag('num_beams')} {self.num_beams}")
        else:
            _check(self.num_return_sequences == 1 or self.samples,
                   f"greedy decoding gives one sequence per prompt: set {with_flag('num_return_sequences')} to 1, "
                   f"sample (do_sample with a temperature > 0; the command line samples unless --greedy or "
                   f"--temperature 0) or use beam search with {with_flag('num_beams')} >= num_return_sequences")
        _check(isinstance(self.stop_strings, (list, tuple))
               and all(isinstance(s, str) and s for s in self.stop_strings),
               f"{with_flag('stop_strings')} must be a list of non-empty strings, got {self.stop_strings!r}")
        _check(all(_is_int(i) and i >= 0 for i in self.eos_ids),
               f"eos_token_id must be a token id or a list of them, got {self.eos_token_id!r}")
        _check(self.pad_token_id is None or (_is_int(self.pad_token_id) and self.pad_token_id >= 0),
               f"pad_token_id must be a token id or None, got {self.pad_token_id!r}")
        _check(self.seed is None or _is_int(self.seed),
               f"{with_flag('seed')} must be an integer or None, got {self.seed!r}")
        return self


# The ``fromzero generate`` flag of each setting that has one.
FLAGS = {
    "max_new_tokens": "--max-new-tokens", "temperature": "--temperature", "top_k": "--top-k",
    "top_p": "--top-p", "min_p": "--min-p", "repetition_penalty": "--repetition-penalty",
    "no_repeat_ngram_size": "--no-repeat-ngram-size", "num_beams": "--num-beams",
    "length_penalty": "--length-penalty", "num_return_sequences": "--num-return-sequences",
    "stop_strings": "--stop", "seed": "--seed",
}  # fmt: skip


def with_flag(setting: str) -> str:
    """``"top_p (--top-p)"``: a setting as a Python caller and a command-line user both recognise it."""
    return f"{setting} ({FLAGS[setting]})"


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise InputError(message)
