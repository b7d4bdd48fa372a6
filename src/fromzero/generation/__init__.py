"""Decoding: turn a trained model's next-token scores into text.

``generate(model, input_ids, config)`` returns prompt + new tokens (greedy, sampling with
temperature / top-k / top-p / min-p, repetition penalty, no-repeat n-grams, beam search, batched
left-padded prompts, stop strings), matching transformers token for token. ``stream(...)`` yields
the text of one continuation as it is produced. ``quantize(model, "fp32" | "bf16" | "int8")``
makes CPU decoding faster: the same weights packed for a faster kernel, or stored in fewer bytes.
"""

from fromzero.generation.config import GenerationConfig
from fromzero.generation.generate import generate
from fromzero.generation.processors import (
    build_processors,
    min_p,
    no_repeat_ngram,
    repetition_penalty,
    temperature,
    top_k,
    top_p,
)
from fromzero.generation.quantize import quantize
from fromzero.generation.streaming import stream

__all__ = [
    "GenerationConfig",
    "build_processors",
    "generate",
    "min_p",
    "no_repeat_ngram",
    "quantize",
    "repetition_penalty",
    "stream",
    "temperature",
    "top_k",
    "top_p",
]
