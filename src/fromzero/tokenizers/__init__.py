"""Tokenizers: how text becomes the integer ids a model reads, and back.

* ``CharTokenizer``: one id per character (tiny vocabulary, long sequences).
* ``WordTokenizer``: one id per word, with ``[PAD]`` and ``[UNK]`` (readable, but lossy).
* ``BPETokenizer``: byte-level byte-pair encoding, trainable from scratch, exactly GPT-2's when
  given GPT-2's vocabulary (``BPETokenizer.gpt2()``), exportable to tiktoken and Hugging Face.

``load_tokenizer("gpt2" | directory)`` loads any of them.
"""

from fromzero.tokenizers.base import Tokenizer
from fromzero.tokenizers.bpe import BPETokenizer
from fromzero.tokenizers.char import CharTokenizer
from fromzero.tokenizers.load import load_tokenizer
from fromzero.tokenizers.patterns import GPT2_PATTERN, GPT4_PATTERN
from fromzero.tokenizers.word import WordTokenizer

__all__ = [
    "BPETokenizer", "CharTokenizer", "GPT2_PATTERN", "GPT4_PATTERN", "Tokenizer", "WordTokenizer", "load_tokenizer",
]
