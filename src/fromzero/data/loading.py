"""Reading corpora: text files, HTML files, folders of them, JSONL, and Hugging Face datasets.

Every reader checks its input and fails with one clear line (a :mod:`fromzero.errors` error)
instead of a traceback: a missing path, a binary file, an empty file or a broken JSONL line
each say what is wrong and where. Text is returned as written, except that line endings become
``"\\n"`` as Python's own ``open()`` does; use :func:`fromzero.data.clean_text` to normalise it.
HTML files are the exception: they give their readable text (:mod:`fromzero.data.html`).

A text corpus holds several *documents* separated by two blank lines, and paragraphs inside
a document separated by one blank line; :func:`load_documents` splits on that convention.

``hf:NAME`` sources are Hugging Face datasets (needs the ``datasets`` package), one document
per row of a text column::

    hf:roneneldan/TinyStories                       the train split, column "text"
    hf:roneneldan/TinyStories:validation            another split ("train[:10%]" slices it)
    hf:Salesforce/wikitext:config=wikitext-2-raw-v1 a dataset with several configurations
    hf:./my_data:column=story                       a local folder (train.jsonl, *.parquet...)
    hf:./stories.parquet                            one local data file, read as the train split
    hf:HuggingFaceFW/fineweb-edu:rows=100000        only the first rows, streamed: nothing more
                                                    is downloaded (for datasets too big to fetch)

A folder written by ``Dataset.save_to_disk`` is read with ``datasets.load_from_disk``.
Hub datasets are downloaded whole into the Hugging Face cache, then read from it offline.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from fromzero.data.bundled import corpus_path, get_corpus, is_corpus_name
from fromzero.data.html import extract_text_from_html
from fromzero.errors import CorruptFileError, FromzeroError, InputError, MissingFileError, OfflineError

if TYPE_CHECKING:
    import datasets

DOCUMENT_SEPARATOR = "\n\n\n"
# Two or more blank lines (lines holding only spaces count as blank) end a document.
_DOCUMENT_BREAK = re.compile(r"\n(?:[ \t]*\n){2,}")
# Binary formats almost always contain a zero byte early on; text never does.
_SNIFF_BYTES = 8192
TEXT_SUFFIXES = (".txt",)
HTML_SUFFIXES = (".html", ".htm", ".xhtml")
HF_PREFIX = "hf:"
HF_SYNTAX = "hf:NAME[:SPLIT][:column=NAME][:config=NAME][:rows=N]"
# Fields of an hf: source are separated by colons, except colons inside a slice: "train[:10%]".
_HF_FIELD_BREAK = re.compile(r":(?![^\[]*\])")

Source = str | os.PathLike


def existing_path(path: Source) -> Path:
    """``path`` as a Path, or a :class:`MissingFileError` if nothing is there."""
    path = Path(path)
    if not path.exists():
        raise MissingFileError(f"{path} does not exist")
    return path


def read_file_bytes(path: Path) -> bytes:
    """The bytes of a file, refusing folders and binary files (any zero byte near the start)."""
    if path.is_dir():
        raise InputError(f"{path} is a folder; expected a file")
    try:
        data = path.read_bytes()
    except OSError as err:
        raise InputError(f"cannot read {path}: {err.strerror}") from None
    if b"\x00" in data[:_SNIFF_BYTES]:
        raise CorruptFileError(f"{path} looks like a binary file, not text")
    return data


def read_text_file(path: Source) -> str:
    """Read one UTF-8 text file (a byte-order mark is allowed), refusing binary or empty files."""
    path = existing_path(path)
    data = read_file_bytes(path)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise CorruptFileError(f"{path} is not UTF-8 text (invalid byte at offset {err.start})") from None
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not text.strip():
        raise InputError(f"{path} is empty")
    return text


def read_html_file(path: Source) -> str:
    """The readable text of an HTML file, without its markup, scripts and navigation."""
    path = existing_path(path)
    return extract_text_from_html(read_file_bytes(path), source=str(path))


def read_file_text(path: Path) -> str:
    """The text of one file: the readable text of an HTML file, all of any other."""
    return read_html_file(path) if path.suffix.lower() in HTML_SUFFIXES else read_text_file(path)


@dataclass
class SkippedFile:
    """A file of a folder that gave no text, and the error that says why."""

    path: Path
    error: FromzeroError


@dataclass
class FolderContent:
    """What :func:`read_folder` found: the text of each readable file (in sorted path order),
    the text and HTML files that failed, and the files of other kinds that were ignored."""

    folder: Path
    texts: dict[Path, str] = field(default_factory=dict)
    skipped: list[SkippedFile] = field(default_factory=list)
    ignored: list[Path] = field(default_factory=list)


def read_folder(folder: Source) -> FolderContent:
    """Read the ``.txt`` and HTML files under ``folder`` (recursively, hidden ones left out),
    keeping the files that fail aside instead of stopping at the first one."""
    folder = existing_path(folder)
    content = FolderContent(folder)
    for path in sorted(folder.rglob("*")):
        if not path.is_file() or any(part.startswith(".") for part in path.relative_to(folder).parts):
            continue
        if path.suffix.lower() not in TEXT_SUFFIXES + HTML_SUFFIXES:
            content.ignored.append(path)
            continue
        try:
            content.texts[path] = read_file_text(path)
        except FromzeroError as err:
            content.skipped.append(SkippedFile(path, err))
    if not content.texts and not content.skipped:
        raise InputError(f"{folder} holds no .txt or .html files")
    return content


def load_text(source: Source) -> str:
    """All the text of a bundled text corpus (``"stories"``), a file, a folder or an ``hf:`` dataset.

    A folder's ``.txt`` and HTML files (searched recursively, in sorted order) are joined with
    :data:`DOCUMENT_SEPARATOR`, so each file stays at least one document; the first file that
    cannot be read stops with its error. Other files in the folder are ignored.
    """
    if is_hf_source(source):
        return DOCUMENT_SEPARATOR.join(load_hf_documents(str(source)))
    if is_corpus_name(source):
        name = str(source).partition("/")[0]
        if get_corpus(name).kind != "text":
            raise InputError(f"{name} is a JSONL corpus; read it with load_jsonl({str(source)!r})")
        return read_text_file(corpus_path(str(source)))
    path = existing_path(source)
    if not path.is_dir():
        return read_file_text(path)
    content = read_folder(path)
    if content.skipped:
        raise content.skipped[0].error
    return DOCUMENT_SEPARATOR.join(text.strip() for text in content.texts.values())


def split_documents(text: str) -> list[str]:
    """Split text on two or more blank lines; documents are stripped, empty ones dropped."""
    return [doc.strip() for doc in _DOCUMENT_BREAK.split(text) if doc.strip()]


def load_documents(source: Source) -> list[str]:
    """The documents of ``source`` (anything :func:`load_text` reads), in order.

    A row of an ``hf:`` dataset is one document, even if it holds blank lines.
    """
    if is_hf_source(source):
        return load_hf_documents(str(source))
    return split_documents(load_text(source))


@dataclass
class BadLine:
    """A JSONL line that could not be read as a JSON object, and why."""

    line: int  # 1-based, as editors number lines
    reason: str


@dataclass
class JsonlContent:
    """What :func:`read_jsonl` found: the good records and the bad lines."""

    path: Path
    records: list[dict] = field(default_factory=list)
    bad_lines: list[BadLine] = field(default_factory=list)


def _parse_line(raw: bytes) -> dict | str:
    """The record on one line, or the reason it is not one."""
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError:
        return "not UTF-8 text"
    try:
        value = json.loads(line)
    except json.JSONDecodeError as err:
        return f"not valid JSON ({err.msg} at column {err.colno})"
    if not isinstance(value, dict):
        return f"expected a JSON object, got {type(value).__name__}"
    return value


def read_jsonl(source: Source) -> JsonlContent:
    """Read every line of a JSONL file, keeping the bad lines aside instead of failing.

    ``source`` is a path or a bundled JSONL corpus part such as ``"education_qa/train"``.
    Blank lines are ignored. The file itself must exist, be text, and not be empty.
    """
    path = corpus_path(str(source)) if is_corpus_name(source) else existing_path(source)
    if path.is_dir():
        raise InputError(f"{path} is a folder; expected a .jsonl file")
    data = read_file_bytes(path)
    content = JsonlContent(path)
    for number, raw in enumerate(data.removeprefix(b"\xef\xbb\xbf").split(b"\n"), start=1):
        if not raw.strip():
            continue
        parsed = _parse_line(raw)
        if isinstance(parsed, dict):
            content.records.append(parsed)
        else:
            content.bad_lines.append(BadLine(number, parsed))
    if not content.records and not content.bad_lines:
        raise InputError(f"{path} is empty")
    return content


def load_jsonl(source: Source, skip_bad: bool = False) -> list[dict]:
    """The records of a JSONL file (one JSON object per line).

    A bad line raises :class:`CorruptFileError` naming its line number, unless ``skip_bad``
    is true: then bad lines are skipped and reported as a warning on the console.
    """
    content = read_jsonl(source)
    if content.bad_lines and not skip_bad:
        first = content.bad_lines[0]
        more = len(content.bad_lines) - 1
        also = f" (and {more} more bad line{'s' * (more > 1)})" if more else ""
        raise CorruptFileError(
            f"{content.path}: line {first.line}: {first.reason}{also}; to skip bad lines use skip_bad=True "
            "(--skip-bad on the command line)"
        )
    if content.bad_lines:
        from rich.markup import escape

        from fromzero.console import console

        numbers = ", ".join(str(bad.line) for bad in content.bad_lines[:10])
        more = ", ..." if len(content.bad_lines) > 10 else ""
        console.print(
            f"[yellow]warning:[/] skipped {len(content.bad_lines)} bad line(s) in {escape(str(content.path))}: "
            f"{numbers}{more}"
        )
    if not content.records:
        raise InputError(f"{content.path} holds no valid records")
    return content.records


def is_hf_source(source: object) -> bool:
    """True for ``"hf:NAME..."`` strings, the Hugging Face datasets :func:`load_documents` reads."""
    return isinstance(source, str) and source.startswith(HF_PREFIX)


@dataclass(frozen=True)
class HfSource:
    """The parts of an ``hf:`` source; ``split`` is None when the source names none."""

    name: str
    split: str | None = None
    column: str = "text"
    config: str | None = None
    rows: int | None = None  # read only the first rows, streamed


def parse_hf_source(source: str) -> HfSource:
    """Parse ``hf:NAME[:SPLIT][:column=NAME][:config=NAME][:rows=N]``."""
    name, *fields = _HF_FIELD_BREAK.split(source.removeprefix(HF_PREFIX))
    options: dict[str, str] = {}
    for text in fields:
        key, equals, value = text.partition("=")
        if not equals:  # a bare field is the split
            key, value = "split", text
        if key not in ("split", "column", "config", "rows") or key in options or not value:
            raise InputError(f"{source!r} does not match {HF_SYNTAX}")
        options[key] = value
    if not name:
        raise InputError(f"{source!r} names no dataset: write {HF_SYNTAX}")
    rows = options.pop("rows", None)
    if rows is not None and not (rows.isdigit() and int(rows) > 0):
        raise InputError(f"rows={rows} in {source!r} must be a positive whole number")
    return HfSource(name, **options, rows=None if rows is None else int(rows))


def _one_line(err: BaseException) -> str:
    """The message of a library error, whose lines we join: ours are always one line."""
    return " ".join(str(err).split())


def _saved_split(saved: datasets.Dataset | datasets.DatasetDict, hf: HfSource) -> datasets.Dataset:
    """The chosen split of a ``save_to_disk`` folder: a saved Dataset is one split already."""
    from datasets import DatasetDict

    if not isinstance(saved, DatasetDict):
        if hf.split:
            raise InputError(f"{hf.name} holds a single saved split; leave out :{hf.split}")
        rows = saved
    else:
        split = hf.split or "train"
        if split not in saved:
            raise InputError(f"{hf.name} has no split {split!r}; its splits are {', '.join(saved)}")
        rows = saved[split]
    return rows.select(range(min(hf.rows, len(rows)))) if hf.rows else rows


def _load_hf_split(hf: HfSource) -> datasets.Dataset | datasets.IterableDataset:
    """One split of a local or Hub dataset (its first ``hf.rows`` rows, streamed, when given)."""
    import datasets

    local = Path(hf.name).expanduser()  # a local folder or file; else hf.name is a Hub name
    if hf.name.startswith((".", "/", "~")) and not local.exists():
        raise MissingFileError(f"{local} does not exist")
    if (local / "dataset_dict.json").is_file() or (local / "state.json").is_file():
        return _saved_split(datasets.load_from_disk(str(local)), hf)
    if local.is_file():  # one data file (.jsonl, .parquet, .csv...) is a dataset with a train split
        path, data_files = str(local.parent), local.name
    else:
        path, data_files = (str(local) if local.exists() else hf.name), None
    split = hf.split or "train"
    if hf.rows:
        return datasets.load_dataset(path, hf.config, data_files=data_files, split=split, streaming=True).take(hf.rows)
    return datasets.load_dataset(path, hf.config, data_files=data_files, split=split)


@contextlib.contextmanager
def _hf_errors(hf: HfSource) -> Iterator[None]:
    """Turn the errors of ``datasets`` into one-line fromzero errors (a streamed dataset raises
    them while it is read, so reading happens inside this too)."""
    import datasets

    try:
        yield
    except FromzeroError:  # ours already say what is wrong (some are ValueErrors too)
        raise
    except ConnectionError as err:  # datasets' own error when the Hub is offline or unreachable
        raise OfflineError(
            f"cannot download dataset {hf.name!r} and it is not in the Hugging Face cache ({_one_line(err)}): "
            "connect to the network with HF_HUB_OFFLINE unset, or give a local folder as hf:./FOLDER"
        ) from None
    except FileNotFoundError as err:
        raise MissingFileError(f"dataset {hf.name!r}: {_one_line(err)}") from None
    except ValueError as err:  # an unknown split or configuration
        raise InputError(f"dataset {hf.name!r}: {_one_line(err)} (write {HF_SYNTAX})") from None
    except datasets.exceptions.DatasetGenerationError as err:
        raise CorruptFileError(f"dataset {hf.name!r} cannot be read: {_one_line(err.__cause__ or err)}") from None


def load_hf_documents(source: str) -> list[str]:
    """The non-empty values of the text column of an ``hf:`` dataset, stripped, in order."""
    hf = parse_hf_source(source)
    try:
        import datasets
    except ImportError:
        raise InputError("hf: sources need the `datasets` package: pip install datasets") from None
    with _hf_errors(hf):
        rows = _load_hf_split(hf)
        if rows.features is None:  # a streamed dataset whose columns are only known once read
            rows = datasets.Dataset.from_list(list(rows))
        return _text_column(rows, hf)


def _text_column(rows: datasets.Dataset | datasets.IterableDataset, hf: HfSource) -> list[str]:
    """The non-empty texts of the chosen column, after checking that it exists and holds text."""
    import datasets

    kinds = {name: getattr(feature, "dtype", type(feature).__name__) for name, feature in rows.features.items()}
    if hf.column not in kinds:
        columns = ", ".join(f"{name} ({kind})" for name, kind in kinds.items())
        raise InputError(
            f"dataset {hf.name!r} has no {hf.column!r} column; its columns are {columns}: "
            "choose one by adding :column=NAME to the source"
        )
    if kinds[hf.column] not in ("string", "large_string"):
        raise InputError(f"column {hf.column!r} of dataset {hf.name!r} holds {kinds[hf.column]}, not text")
    texts = rows[hf.column] if isinstance(rows, datasets.Dataset) else (row[hf.column] for row in rows)
    return [text.strip() for text in texts if text and text.strip()]
