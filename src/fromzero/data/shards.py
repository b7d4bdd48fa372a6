"""Token shards: a corpus tokenized once and stored on disk as a flat array of token ids.

Training reads millions of short windows from the corpus. Re-tokenizing text each time would
dominate the run, so we tokenize once and write the ids as raw ``uint16`` (``uint32`` when the
vocabulary has more than 65,536 tokens) next to a small JSON header::

    DIR/shards.json      header: format, tokenizer id, dtype, token count of each split
    DIR/train.bin        the training tokens, one flat array
    DIR/val.bin          the validation tokens
    DIR/tokenizer files  the tokenizer's own ``save(dir)`` output, so the directory is self-contained

The ``.bin`` files are opened with ``numpy.memmap``: the operating system pages in only the parts
a batch touches, so a corpus much larger than memory still trains.

Documents are joined with the tokenizer's end-of-text token (``tok.eot_id``), so the model learns
where one story stops and the next begins. A tokenizer without one (the character tokenizer,
whose vocabulary is exactly the corpus's characters) gets the corpus's own document separator
instead: the text ``"\\n\\n\\n"`` (two blank lines), which is how the bundled corpora separate
documents, so the character model learns the same boundary in its own alphabet.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from fromzero.console import progress
from fromzero.data.settings import DOCUMENT_SEPARATOR
from fromzero.data.split import train_val_documents
from fromzero.errors import CorruptFileError, InputError, MissingFileError
from fromzero.files import atomic_path, write_json

HEADER_NAME = "shards.json"
FORMAT = "fromzero-token-shards"
FORMAT_VERSION = 1
SPLITS = ("train", "val")


@dataclass(frozen=True)
class TokenizerId:
    """What identifies a tokenizer: its kind, vocabulary size and a hash of its saved files."""

    kind: str
    vocab_size: int
    fingerprint: str

    @classmethod
    def of(cls, tokenizer: Any) -> "TokenizerId":
        with tempfile.TemporaryDirectory() as tmp:
            tokenizer.save(tmp)
            digest = hashlib.sha256()
            for path in sorted(Path(tmp).rglob("*")):
                if path.is_file():
                    digest.update(path.name.encode())
                    digest.update(path.read_bytes())
        return cls(type(tokenizer).__name__, int(tokenizer.vocab_size), digest.hexdigest())


@dataclass
class TokenShards:
    """A prepared corpus: memory-mapped train and val token arrays plus their header."""

    directory: Path
    tokenizer_id: TokenizerId
    dtype: str
    train: np.ndarray
    val: np.ndarray
    separator: list[int]

    @property
    def vocab_size(self) -> int:
        return self.tokenizer_id.vocab_size

    def split(self, name: str) -> np.ndarray:
        return self.train if name == "train" else self.val


def token_dtype(vocab_size: int) -> np.dtype:
    """The smallest unsigned type that holds every id: uint16 up to 65,536 tokens, else uint32."""
    return np.dtype(np.uint16) if vocab_size <= 2**16 else np.dtype(np.uint32)


def separator_ids(tokenizer: Any) -> list[int]:
    """Ids placed between documents: the EOT token, or the encoded blank-line separator."""
    if getattr(tokenizer, "eot_id", None) is not None:
        return [int(tokenizer.eot_id)]
    return list(tokenizer.encode(DOCUMENT_SEPARATOR))


def encode_documents(
    tokenizer: Any, documents: Sequence[str], advance: Callable[[], None] | None = None
) -> np.ndarray:
    """Encode documents and join them with the separator (also after the last one).

    ``advance`` is called after each document (a progress bar's step).
    """
    separator = separator_ids(tokenizer)
    dtype = token_dtype(tokenizer.vocab_size)
    pieces = []
    for doc in documents:
        pieces.append(np.asarray(tokenizer.encode(doc), dtype=np.int64))
        pieces.append(np.asarray(separator, dtype=np.int64))
        if advance:
            advance()
    ids = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.int64)
    if ids.size and (ids.min() < 0 or ids.max() >= tokenizer.vocab_size):
        raise InputError("the tokenizer produced ids outside its own vocabulary")
    return ids.astype(dtype)


def write_shards(
    tokenizer: Any,
    documents: Sequence[str],
    directory: str | Path,
    val_fraction: float = 0.1,
    seed: int = 0,
    quiet: bool = False,
    split: tuple[list[str], list[str]] | None = None,
) -> TokenShards:
    """Tokenize ``documents`` once and write train/val shards plus the tokenizer to ``directory``.

    The validation documents are drawn by :func:`train_val_documents`, unless ``split`` gives the
    ``(train, val)`` documents already drawn (per source, by :func:`train_val_by_source`).

    Everything is tokenized before anything is written, and the header that makes ``directory``
    a shard folder is removed first and written last: a failure or an interruption never leaves
    a header describing files it did not write.
    """
    directory = Path(directory)
    train_docs, val_docs = split or train_val_documents(documents, val_fraction, seed)
    tok_id = TokenizerId.of(tokenizer)
    dtype = token_dtype(tok_id.vocab_size)
    with progress(transient=True, disable=quiet) as bar:
        task = bar.add_task(f"tokenizing with {type(tokenizer).__name__}", total=len(documents))
        encoded = {name: encode_documents(tokenizer, docs, lambda: bar.advance(task))
                   for name, docs in (("train", train_docs), ("val", val_docs))}
    (directory / HEADER_NAME).unlink(missing_ok=True)
    for name, ids in encoded.items():
        with atomic_path(directory / f"{name}.bin") as tmp:
            ids.tofile(tmp)
    tokenizer.save(directory)
    counts = {name: int(ids.size) for name, ids in encoded.items()}
    header = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "tokenizer": asdict(tok_id),
        "dtype": dtype.name,
        "separator": separator_ids(tokenizer),
        "splits": {name: {"file": f"{name}.bin", "tokens": counts[name]} for name in SPLITS},
        "documents": {"train": len(train_docs), "val": len(val_docs)},
        "val_fraction": val_fraction,
        "seed": seed,
    }
    write_json(directory / HEADER_NAME, header)
    return load_shards(directory)


def is_shard_dir(path: str | Path) -> bool:
    return (Path(path) / HEADER_NAME).is_file()


def load_shards(directory: str | Path) -> TokenShards:
    """Open prepared shards (memory-mapped) after checking the header against the files."""
    directory = Path(directory)
    header_path = directory / HEADER_NAME
    if not header_path.is_file():
        raise MissingFileError(
            f"{directory} has no {HEADER_NAME}; make shards with `fromzero data prepare SOURCE --out DIR`"
        )
    try:
        header = json.loads(header_path.read_text(encoding="utf-8"))
        if header.get("format") != FORMAT:
            raise ValueError(f"format is {header.get('format')!r}, not {FORMAT!r}")
        tok_id = TokenizerId(**header["tokenizer"])
        dtype = np.dtype(header["dtype"])
        splits = header["splits"]
        separator = [int(i) for i in header["separator"]]
    except (ValueError, KeyError, TypeError) as err:
        raise CorruptFileError(f"{header_path} is not a valid shard header ({err})") from err
    arrays = {}
    for name in SPLITS:
        path = directory / splits[name]["file"]
        expected = int(splits[name]["tokens"])
        if not path.is_file():
            raise MissingFileError(f"shard file {path} is missing; prepare the shards again")
        size = path.stat().st_size
        if size != expected * dtype.itemsize:
            raise CorruptFileError(
                f"{path} holds {size} bytes but the header promises {expected} {dtype.name} tokens "
                f"({expected * dtype.itemsize} bytes); the file is truncated or was overwritten"
            )
        arrays[name] = (
            np.memmap(path, dtype=dtype, mode="r") if expected else np.zeros(0, dtype=dtype)
        )
    return TokenShards(directory, tok_id, dtype.name, arrays["train"], arrays["val"], separator)


def check_tokenizer(shards: TokenShards, tokenizer: Any) -> None:
    """Refuse shards made with a different tokenizer: their ids would mean different text."""
    given = TokenizerId.of(tokenizer)
    if given != shards.tokenizer_id:
        raise InputError(
            f"the shards in {shards.directory} were made with a {shards.tokenizer_id.kind} "
            f"(vocab {shards.tokenizer_id.vocab_size}), not this {given.kind} "
            f"(vocab {given.vocab_size}); prepare the shards again with this tokenizer"
        )


def check_length(shards: TokenShards, block_size: int) -> None:
    """Both splits need at least one full window of ``block_size + 1`` tokens."""
    for name in SPLITS:
        n = len(shards.split(name))
        if n < block_size + 1:
            raise InputError(
                f"the {name} split has only {n} tokens, fewer than block_size + 1 = "
                f"{block_size + 1}; use more text or a smaller --block-size"
            )
