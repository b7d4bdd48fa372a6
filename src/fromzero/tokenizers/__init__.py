"""Tokenizers: how text becomes the integer ids a model reads, and back.

* ``CharTokenizer``: one id per character (tiny vocabulary, long sequences).
* ``WordTokenizer``: one id per word, with ``[PAD]`` and ``[UNK]`` (readable, but lossy).
* ``BPETokenizer``: byte-level byte-pair encoding, trainable from scratch, exactly GPT-2's when
  given GPT-2's vocabulary (``BPETokenizer.gpt2()``), exportable to tiktoken and Hugging Face.
  Start reading BPE in ``naive.py`` (the textbook algorithm in about 60 lines), then
  ``train.py`` (the same merges, learned fast) and ``bpe.py`` (the same ids; ``fast=False`` runs
  its readable encoder instead of tiktoken's Rust core).
* ``WordPieceTokenizer``: BERT's sub-word tokenizer (``##`` continuations), read from a BERT or
  sentence-transformers folder; the sentence encoders of :mod:`fromzero.embeddings` use it.

``load_tokenizer("gpt2" | directory)`` loads any of them.
"""

from fromzero.tokenizers.base import Tokenizer
from fromzero.tokenizers.bpe import BPETokenizer
from fromzero.tokenizers.char import CharTokenizer
from fromzero.tokenizers.load import load_tokenizer
from fromzero.tokenizers.patterns import GPT2_PATTERN, GPT4_PATTERN
from fromzero.tokenizers.word import WordTokenizer
from fromzero.tokenizers.wordpiece import WordPieceTokenizer

__all__ = [
    "BPETokenizer", "CharTokenizer", "GPT2_PATTERN", "GPT4_PATTERN", "Tokenizer", "WordPieceTokenizer", "WordTokenizer",
    "load_tokenizer",
]
