"""Reading corpora: text files, HTML files, folders of them, JSONL, and Hugging Face datasets.

Every reader checks its input and fails with one clear line (a :mod:`fromzero.errors` error)
instead of a traceback: a missing path, a binary file, an empty file or a broken JSONL line
each say what is wrong and where. Text is returned as written, except that line endings become
``"\\n"`` as Python's own ``open()`` does; use :func:`fromzero.data.clean_text` to normalise it.
HTML files are the exception: they give their readable text (:mod:`fromzero.data.html`).

A text corpus holds several *documents* separated by two blank lines, and paragraphs inside
a document separated by one blank line; :func:`load_documents` splits on that convention.

JSONL (one JSON object per line: what ``fromzero data collect --out x.jsonl`` writes, the bundled
Q&A corpora, most shared datasets) follows one rule in every command that reads text, so that
a model never trains on the JSON syntax itself:

* a ``.jsonl`` file, or a part of a bundled JSONL corpus, is parsed, never read as plain text;
* each record is one document: the string in its *text field*, ``text`` unless the command's
  ``--text-field`` names another (an ``hf:`` dataset reads the same name as its column); a
  record whose field is empty or ``null`` gives no document, like an empty row of a dataset;
* a line that is not a JSON object, or a record without text in that field, is a *bad line*:
  the first one stops with its line number, unless ``--skip-bad`` skips them all with a
  warning that lists them;
* when no record has the field at all, the error lists the fields the records do have.

``hf:NAME`` sources are Hugging Face datasets, read by :mod:`fromzero.data.hf`.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rich.markup import escape

from fromzero.console import console
from fromzero.data.bundled import corpus_path, get_corpus, is_corpus_name
from fromzero.data.hf import is_hf_source, load_hf_documents
from fromzero.data.html import extract_text_from_html
from fromzero.data.settings import DEFAULT_TEXT_FIELD, DOCUMENT_SEPARATOR
from fromzero.errors import CorruptFileError, FromzeroError, InputError, MissingFileError

# Two or more blank lines (lines holding only spaces count as blank) end a document.
_DOCUMENT_BREAK = re.compile(r"\n(?:[ \t]*\n){2,}")
# Binary formats almost always contain a zero byte early on; text never does.
_SNIFF_BYTES = 8192
TEXT_SUFFIXES = (".txt",)
HTML_SUFFIXES = (".html", ".htm", ".xhtml")
JSONL_SUFFIX = ".jsonl"

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


def load_text(source: Source, text_field: str = DEFAULT_TEXT_FIELD, skip_bad: bool = False) -> str:
    """All the text of a bundled corpus (``"stories"``), a file, a folder or an ``hf:`` dataset.

    A folder's ``.txt`` and HTML files (searched recursively, in sorted order) are joined with
    :data:`DOCUMENT_SEPARATOR`, so each file stays at least one document; the first file that
    cannot be read stops with its error. Other files in the folder are ignored. The documents
    of a JSONL file or an ``hf:`` dataset (``text_field`` and ``skip_bad``: see the module
    docstring) are joined with :data:`DOCUMENT_SEPARATOR` too.
    """
    if is_hf_source(source) or is_jsonl_source(source):
        return DOCUMENT_SEPARATOR.join(load_documents(source, text_field, skip_bad))
    if is_corpus_name(source):
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


def load_documents(source: Source | Sequence[Source], text_field: str = DEFAULT_TEXT_FIELD,
                   skip_bad: bool = False) -> list[str]:
    """The documents of ``source`` (anything :func:`load_text` reads, or a list of such), in order.

    A record of a JSONL file and a row of an ``hf:`` dataset are one document each, even if
    they hold blank lines. A list of sources gives their documents one after the other
    (``text_field`` applies to each JSONL or ``hf:`` source among them).
    """
    if isinstance(source, (list, tuple)):
        return [document for part in source for document in load_documents(part, text_field, skip_bad)]
    if is_hf_source(source):
        return load_hf_documents(str(source), text_field)
    if is_jsonl_source(source):
        return load_jsonl_documents(source, text_field, skip_bad)
    return split_documents(load_text(source))


def is_jsonl_source(source: object) -> bool:
    """True for a path ending in ``.jsonl`` and for the bundled JSONL corpora and their parts."""
    if is_corpus_name(source):
        return get_corpus(str(source).partition("/")[0]).kind == "jsonl"
    return isinstance(source, (str, os.PathLike)) and Path(source).suffix.lower() == JSONL_SUFFIX


@dataclass
class BadLine:
    """A JSONL line that could not be read as a record, and why."""

    line: int  # 1-based, as editors number lines
    reason: str


@dataclass
class JsonlContent:
    """What :func:`read_jsonl` found: the good records (and the line of each) and the bad lines."""

    path: Path
    records: list[dict] = field(default_factory=list)
    bad_lines: list[BadLine] = field(default_factory=list)
    record_lines: list[int] = field(default_factory=list)


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


def _jsonl_path(source: Source) -> Path:
    """The file behind a path or a bundled corpus part such as ``"education_qa/train"``."""
    path = corpus_path(str(source)) if is_corpus_name(source) else existing_path(source)
    if path.is_dir() and is_corpus_name(source):  # a corpus in parts: reading all would mix train and test
        parts = ", ".join(f"{source}/{part}" for part in get_corpus(str(source)).parts)
        raise InputError(
            f"{source} is a JSONL corpus in parts: name one of {parts} "
            f"(`fromzero data stats {source}` shows their records and fields)"
        )
    if path.is_dir():
        raise InputError(f"{path} is a folder; expected a .jsonl file")
    return path


def read_jsonl(source: Source) -> JsonlContent:
    """Read every line of a JSONL file, keeping the bad lines aside instead of failing.

    ``source`` is a path or a bundled JSONL corpus part such as ``"education_qa/train"``.
    Blank lines are ignored. The file itself must exist, be text, and not be empty.
    """
    path = _jsonl_path(source)
    data = read_file_bytes(path)
    content = JsonlContent(path)
    for number, raw in enumerate(data.removeprefix(b"\xef\xbb\xbf").split(b"\n"), start=1):
        if not raw.strip():
            continue
        parsed = _parse_line(raw)
        if isinstance(parsed, dict):
            content.records.append(parsed)
            content.record_lines.append(number)
        else:
            content.bad_lines.append(BadLine(number, parsed))
    if not content.records and not content.bad_lines:
        raise InputError(f"{path} is empty")
    return content


def check_bad_lines(path: Path, bad_lines: list[BadLine], skip_bad: bool, unit: str = "line") -> None:
    """Stop at the first bad line, naming its number, or (``skip_bad``) warn and list them.

    ``unit`` names what the numbers count: ``"record"`` for the records of a JSON list.
    """
    if not bad_lines:
        return
    bad_lines = sorted(bad_lines, key=lambda bad: bad.line)
    if not skip_bad:
        first, more = bad_lines[0], len(bad_lines) - 1
        also = f" (and {more} more bad {unit}{'s' * (more > 1)})" if more else ""
        raise CorruptFileError(
            f"{path}: {unit} {first.line}: {first.reason}{also}; fix it, or skip bad {unit}s with --skip-bad"
        )
    numbers = ", ".join(str(bad.line) for bad in bad_lines[:10])
    more = ", ..." if len(bad_lines) > 10 else ""
    console.print(f"[yellow]warning:[/] skipped {len(bad_lines)} bad {unit}(s) in {escape(str(path))}: {numbers}{more}",
                  soft_wrap=True)  # a path cut across lines could not be copied


def load_jsonl(source: Source, skip_bad: bool = False) -> list[dict]:
    """The records of a JSONL file (one JSON object per line).

    A bad line raises :class:`CorruptFileError` naming its line number, unless ``skip_bad``
    is true: then bad lines are skipped and reported as a warning on the console.
    """
    content = read_jsonl(source)
    check_bad_lines(content.path, content.bad_lines, skip_bad)
    if not content.records:
        raise InputError(f"{content.path} holds no valid records")
    return content.records


def load_jsonl_documents(source: Source, text_field: str = DEFAULT_TEXT_FIELD, skip_bad: bool = False) -> list[str]:
    """The text of each record of a JSONL file, stripped, in order (the rule is in the module docstring)."""
    content = read_jsonl(source)
    if content.records and not any(text_field in record for record in content.records):
        fields = ", ".join(dict.fromkeys(name for record in content.records for name in record)) or "none"
        raise InputError(
            f"{content.path}: no record has a {text_field!r} field (its fields: {fields}); "
            "name the field that holds the text with --text-field NAME"
        )
    documents, bad_lines = [], list(content.bad_lines)
    for line, record in zip(content.record_lines, content.records):
        value = record.get(text_field)
        if text_field not in record:
            bad_lines.append(BadLine(line, f"the record has no {text_field!r} field"))
        elif value is not None and not isinstance(value, str):
            bad_lines.append(BadLine(line, f"{text_field!r} holds {type(value).__name__}, not text"))
        elif value and value.strip():
            documents.append(value.strip())
    check_bad_lines(content.path, bad_lines, skip_bad)
    if not documents:
        raise InputError(f"{content.path} holds no text in its {text_field!r} field")
    return documents
