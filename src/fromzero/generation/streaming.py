"""Streaming: hand out the text as it is generated, one safe piece at a time.

Two things make this harder than printing each token's text:

- A byte-level BPE token is a run of *bytes*, and one character (an emoji, "é" in some merges) may
  be split over two tokens. Decoding a sequence that ends mid-character gives the replacement
  character U+FFFD at the end, which later turns into the real character. So we decode everything
  generated so far and hold back trailing U+FFFD until the next token settles it: the pieces always
  add up to the final decoded text and never show a broken character.
- A stop string may arrive split over several tokens ("\\nUs" + "er:"), so the end of the text that
  could still become a stop string is held back too; the stop string itself is never yielded.
"""

from __future__ import annotations

from typing import Iterator, Protocol

import torch

from fromzero.errors import InputError
from fromzero.generation.config import GenerationConfig, with_flag
from fromzero.generation.generate import check_inputs, eval_mode, start
from fromzero.generation.processors import build_processors
from fromzero.generation.sampling import sample_steps
from fromzero.generation.stopping import finished_text
from fromzero.machine import threads

REPLACEMENT = "\ufffd"


class TextTokenizer(Protocol):
    def encode(self, text: str) -> list[int]: ...
    def decode(self, ids: list[int]) -> str: ...


def stream(model: torch.nn.Module, tokenizer: TextTokenizer, prompt: str | list[int],
           config: GenerationConfig | None = None) -> Iterator[str]:
    """Yield the continuation of ``prompt`` (text or token ids) as text pieces, as they are made.

    ``"".join(stream(...))`` is the row's :func:`~fromzero.generation.stopping.finished_text`: the
    generated tokens decoded, without a final eos token and cut before the first stop string.
    Works with greedy decoding and sampling (beam search only knows its answer at the end).
    Every input is checked by this call, before the first piece is asked for, so a caller that
    prints the prompt first never shows it followed by an error.
    """
    config = check_streamable(config or GenerationConfig())
    ids = tokenizer.encode(prompt) if isinstance(prompt, str) else list(prompt)
    if not ids:
        raise InputError("the prompt is empty: give at least one token of text to continue")
    device = next(model.parameters()).device
    input_ids, _ = check_inputs(model, torch.tensor([ids], device=device), None, config)
    return _pieces(model, tokenizer, input_ids, config)


def check_streamable(config: GenerationConfig) -> GenerationConfig:
    """Validate ``config`` for streaming, which gives one sequence; return it."""
    config.validate()
    if config.num_beams > 1 or config.num_return_sequences > 1:
        raise InputError(f"streaming gives one sequence: use {with_flag('num_beams')} 1 and "
                         f"{with_flag('num_return_sequences')} 1")
    return config


@torch.inference_mode()
def _pieces(model: torch.nn.Module, tokenizer: TextTokenizer, input_ids: torch.Tensor,
            config: GenerationConfig) -> Iterator[str]:
    with eval_mode(model), threads.following(input_ids.device):
        decoder, logits, prompt_ids, stop, generator = start(model, input_ids, None, config, tokenizer)
        text = TextStream(tokenizer, config)
        # the row's last step (eos, stop string or length) is the generator's last
        for sequences in sample_steps(decoder, logits, prompt_ids, config, build_processors(config), stop,
                                      generator):
            piece = text.push(int(sequences[0, -1]))
            if piece:
                yield piece
        rest = text.finish()
        if rest:
            yield rest


class TextStream:
    """Token ids in, safe text out: the streaming logic for any caller that gets tokens one by one.

    :func:`stream` uses it, and so does the server, whose tokens come from the batching scheduler.
    ``push`` returns the text that can be shown now ('' when everything new is held back), ``finish``
    the rest; together they add up to :func:`~fromzero.generation.stopping.finished_text`.
    """

    def __init__(self, tokenizer: TextTokenizer, config: GenerationConfig):
        self.tokenizer = tokenizer
        self.config = config
        self.ids: list[int] = []
        self.text = ""
        self.sent = 0

    def push(self, token: int) -> str:
        self.ids.append(token)
        self.text = finished_text(self.tokenizer, self.ids, self.config)
        safe = _safe_end(self.text, self.config.stop_strings)
        if safe <= self.sent:
            return ""
        piece, self.sent = self.text[self.sent:safe], safe
        return piece

    def finish(self) -> str:
        piece, self.sent = self.text[self.sent:], len(self.text)
        return piece


def _safe_end(text: str, stop_strings: list[str]) -> int:
    """How much of ``text`` can be shown now: not a possibly unfinished character at the end,
    nor an ending that may still grow into a stop string."""
    end = len(text.rstrip(REPLACEMENT))
    held = 0
    for stop in stop_strings:
        for size in range(min(len(stop) - 1, end), held, -1):
            if text[end - size:end] == stop[:size]:
                held = size
                break
    return end - held
