"""Reading corpora from disk: plain text files, folders of them, and JSONL.

Every reader checks its input and fails with one clear line (a :mod:`fromzero.errors` error)
instead of a traceback: a missing path, a binary file, an empty file or a broken JSONL line
each say what is wrong and where. Text is returned as written, except that line endings become
``"\\n"`` as Python's own ``open()`` does; use :func:`fromzero.data.clean_text` to normalise it.

A text corpus holds several *documents* separated by two blank lines, and paragraphs inside
a document separated by one blank line; :func:`load_documents` splits on that convention.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from fromzero.data.bundled import corpus_path, get_corpus, is_corpus_name
from fromzero.errors import CorruptFileError, InputError, MissingFileError

DOCUMENT_SEPARATOR = "\n\n\n"
# Two or more blank lines (lines holding only spaces count as blank) end a document.
_DOCUMENT_BREAK = re.compile(r"\n(?:[ \t]*\n){2,}")
# Binary formats almost always contain a zero byte early on; text never does.
_SNIFF_BYTES = 8192

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


def _text_files(folder: Path) -> list[Path]:
    files = sorted(
        path
        for path in folder.rglob("*.txt")
        if path.is_file() and not any(part.startswith(".") for part in path.relative_to(folder).parts)
    )
    if not files:
        raise InputError(f"{folder} holds no .txt files")
    return files


def load_text(source: Source) -> str:
    """All the text of a bundled text corpus (``"stories"``), a ``.txt`` file or a folder.

    A folder's ``.txt`` files (searched recursively, in sorted order) are joined with
    :data:`DOCUMENT_SEPARATOR`, so each file stays at least one document.
    """
    if is_corpus_name(source):
        name = str(source).partition("/")[0]
        if get_corpus(name).kind != "text":
            raise InputError(f"{name} is a JSONL corpus; read it with load_jsonl({str(source)!r})")
        return read_text_file(corpus_path(str(source)))
    path = existing_path(source)
    if path.is_dir():
        return DOCUMENT_SEPARATOR.join(read_text_file(file).strip() for file in _text_files(path))
    return read_text_file(path)


def split_documents(text: str) -> list[str]:
    """Split text on two or more blank lines; documents are stripped, empty ones dropped."""
    return [doc.strip() for doc in _DOCUMENT_BREAK.split(text) if doc.strip()]


def load_documents(source: Source) -> list[str]:
    """The documents of ``source`` (anything :func:`load_text` reads), in order."""
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
