"""From a text source to token shards: pick the tokenizer, tokenize once, write the shards.

``fromzero data prepare`` calls :func:`prepare`, and so does ``fromzero train`` when its
``--data`` is text rather than prepared shards, so both make exactly the same files.
"""

from __future__ import annotations

from pathlib import Path

from fromzero.data.loading import DOCUMENT_SEPARATOR, load_documents
from fromzero.data.split import train_val_by_source
from fromzero.data.settings import DEFAULT_TEXT_FIELD
from fromzero.data.shards import TokenShards, write_shards
from fromzero.errors import InputError
from fromzero.tokenizers import BPETokenizer, CharTokenizer, Tokenizer, load_tokenizer

TOKENIZER_CHOICES = "char, gpt2, bpe:DIR (a saved tokenizer) or bpe:N (a BPE of N tokens trained on the data)"


def build_tokenizer(spec: str, documents: list[str]) -> Tokenizer:
    """``char`` (the alphabet of ``documents``), ``gpt2``, ``bpe:DIR`` or a saved tokenizer folder, or
    ``bpe:N``: a byte-level BPE of N tokens trained on ``documents`` (GPT-2's pattern, ``<|endoftext|>``),
    so that one command makes a model whose vocabulary fits its text (a folder named only with
    digits is given as ``bpe:./2048``)."""
    if spec == "char":
        return CharTokenizer.from_text([*documents, DOCUMENT_SEPARATOR])
    if spec == "gpt2":
        return BPETokenizer.gpt2()
    if spec.startswith("bpe:") and spec[4:].isdigit():
        size = int(spec[4:])
        if size <= 257:
            raise InputError(f"--tokenizer {spec}: a BPE needs more than 257 tokens (256 bytes and <|endoftext|>)")
        return BPETokenizer.train(documents, size, name=f"bpe-{size}")
    if spec.startswith("bpe:"):
        return load_tokenizer(spec[4:])
    if Path(spec).is_dir():
        return load_tokenizer(spec)
    raise InputError(f"--tokenizer must be {TOKENIZER_CHOICES}, got {spec!r}")


def prepare(
    source: str | list[str],
    tokenizer_spec: str,
    out: str | Path,
    val_fraction: float = 0.1,
    seed: int = 0,
    quiet: bool = False,
    text_field: str = DEFAULT_TEXT_FIELD,
    skip_bad: bool = False,
) -> TokenShards:
    """Tokenize a text source into shards in ``out``.

    ``source``, ``text_field`` and ``skip_bad`` are read by :func:`~fromzero.data.loading.load_documents`.
    Several sources are split each on its own (:func:`~fromzero.data.split.train_val_by_source`), so
    each holds out the documents it would hold out alone.
    """
    sources = list(source) if isinstance(source, (list, tuple)) else [source]
    groups = [load_documents(one, text_field, skip_bad) for one in sources]
    documents = [doc for group in groups for doc in group]
    tokenizer = build_tokenizer(tokenizer_spec, documents)
    split = train_val_by_source(groups, val_fraction, seed) if len(groups) > 1 else None
    return write_shards(tokenizer, documents, out, val_fraction, seed, quiet=quiet, split=split)
