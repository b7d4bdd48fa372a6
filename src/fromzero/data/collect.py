"""Building a text corpus from web pages, HTML files, text and JSONL files and folders of them.

:func:`collect` reads each source, extracts and cleans its text, drops documents too short to
teach anything, removes exact and near duplicates across all sources, and reports what
happened to every source. A source that fails (missing file, binary file, unreachable URL,
page without text) is *skipped with its reason*, so one bad link does not lose the rest;
likewise a bad file in a folder is skipped and named, and the folder's other files are kept.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from fromzero.data.cleaning import clean_text
from fromzero.data.dedup import DedupResult, deduplicate
from fromzero.data.loading import (
    DOCUMENT_SEPARATOR,
    HTML_SUFFIXES,
    FolderContent,
    existing_path,
    is_jsonl_source,
    load_jsonl_documents,
    read_file_text,
    read_folder,
    split_documents,
)
from fromzero.data.html import fetch_url_text
from fromzero.data.settings import DEFAULT_MIN_CHARS, DEFAULT_TIMEOUT
from fromzero.data.web import is_url
from fromzero.errors import FromzeroError
from fromzero.files import write_text

# How many skipped or ignored files of a folder the report names; the rest are counted.
NAMED_FILES = 5


@dataclass
class SourceReport:
    """What one source gave: documents kept after filtering and deduplication, or why none."""

    source: str
    read: int = 0  # documents read from the source
    too_short: int = 0
    duplicates: int = 0
    kept: int = 0
    chars: int = 0
    error: str = ""
    # For a folder: files read per kind ("txt", "html"), files that failed (each error naming
    # its file), files of other kinds that were ignored (by relative path).
    files_read: dict[str, int] = field(default_factory=dict)
    files_skipped: list[str] = field(default_factory=list)
    files_ignored: list[str] = field(default_factory=list)

    def add_folder(self, folder: FolderContent) -> None:
        """Record which files of ``folder`` were read, skipped and ignored."""
        kinds = Counter("html" if path.suffix.lower() in HTML_SUFFIXES else "txt" for path in folder.texts)
        self.files_read = dict(sorted(kinds.items()))
        # Errors name a file by its full path; in the folder's report its relative path is enough.
        self.files_skipped = [
            str(bad.error).replace(str(bad.path), str(bad.path.relative_to(folder.folder))) for bad in folder.skipped
        ]
        self.files_ignored = [str(path.relative_to(folder.folder)) for path in folder.ignored]

    @property
    def ok(self) -> bool:
        return self.kept > 0


@dataclass
class Collection:
    """The collected documents, the source of each, and a report per source."""

    documents: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    reports: list[SourceReport] = field(default_factory=list)
    dedup: DedupResult | None = None


def read_source(source: str, timeout: float = DEFAULT_TIMEOUT) -> tuple[list[str], FolderContent | None]:
    """The cleaned documents of one URL, HTML file, text file, JSONL file (the ``text`` of each
    record, as collect writes them) or folder of text and HTML files, and for a folder what
    :func:`~fromzero.data.loading.read_folder` found in it."""
    if is_url(source):
        return [fetch_url_text(source, timeout=timeout)], None
    path = existing_path(source)
    folder = read_folder(path) if path.is_dir() else None
    if folder is None and is_jsonl_source(path):
        found = load_jsonl_documents(path)
    else:
        texts = list(folder.texts.values()) if folder else [read_file_text(path)]
        found = [doc for text in texts for doc in split_documents(text)]
    documents = (clean_text(doc) for doc in found)
    return [doc for doc in documents if doc], folder


def collect(
    sources: Sequence[str | os.PathLike],
    *,
    min_chars: int = DEFAULT_MIN_CHARS,
    dedup: bool = True,
    timeout: float = DEFAULT_TIMEOUT,
) -> Collection:
    """Read every source, keep documents of at least ``min_chars`` characters, deduplicate."""
    collection = Collection()
    candidates: list[tuple[str, int]] = []  # (document, index of its report)
    for source in sources:
        report = SourceReport(str(source))
        collection.reports.append(report)
        try:
            documents, folder = read_source(str(source), timeout)
        except FromzeroError as err:
            report.error = str(err)
            continue
        if folder:
            report.add_folder(folder)
        report.read = len(documents)
        long_enough = [doc for doc in documents if len(doc) >= min_chars]
        report.too_short = len(documents) - len(long_enough)
        candidates += [(doc, len(collection.reports) - 1) for doc in long_enough]

    texts = [doc for doc, _ in candidates]
    if dedup:
        collection.dedup = deduplicate(texts)
        kept = collection.dedup.kept
    else:
        kept = list(range(len(texts)))
    kept_per_report = Counter(candidates[i][1] for i in kept)
    for i in kept:
        doc, report_index = candidates[i]
        collection.documents.append(doc)
        collection.sources.append(collection.reports[report_index].source)
        collection.reports[report_index].chars += len(doc)
    for report_index, report in enumerate(collection.reports):
        report.kept = kept_per_report[report_index]
        report.duplicates = report.read - report.too_short - report.kept
    return collection


def _listing(items: list[str]) -> str:
    """The first :data:`NAMED_FILES` items, then how many more, in parentheses."""
    more = len(items) - NAMED_FILES
    return "(" + "; ".join(items[:NAMED_FILES]) + (f"; and {more} more" if more > 0 else "") + ")"


def skip_reason(report: SourceReport, min_chars: int) -> str:
    """The notes on a source: why it gave nothing, or what was dropped from it, and for a
    folder how many files of each kind were read and which were skipped or ignored."""
    if report.error:
        return report.error
    notes = []
    if report.files_read or report.files_skipped:
        counts = " + ".join(f"{count} .{kind}" for kind, count in report.files_read.items())
        notes.append(f"read {counts or 0} files")
    if report.files_skipped:
        notes.append(f"skipped {len(report.files_skipped)} {_listing(report.files_skipped)}")
    if report.files_ignored:
        notes.append(f"ignored {len(report.files_ignored)} not .txt or .html {_listing(report.files_ignored)}")
    if report.too_short:
        notes.append(f"{report.too_short} shorter than {min_chars} chars")
    if report.duplicates:
        notes.append(f"{report.duplicates} duplicate{'s' * (report.duplicates > 1)}")
    return "; ".join(notes)


def write_collection(collection: Collection, path: str | Path) -> None:
    """Write the documents atomically: as JSONL (``{"text", "source"}`` per line) when ``path``
    ends in ``.jsonl``, otherwise as text with two blank lines between documents."""
    path = Path(path)
    if path.suffix.lower() == ".jsonl":
        pairs = zip(collection.documents, collection.sources)
        lines = [json.dumps({"text": text, "source": source}, ensure_ascii=False) for text, source in pairs]
        write_text(path, "\n".join(lines) + "\n")
    else:
        write_text(path, DOCUMENT_SEPARATOR.join(collection.documents) + "\n")
