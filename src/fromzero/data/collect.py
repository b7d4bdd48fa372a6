"""Building a text corpus from web pages, HTML files and text files.

:func:`collect` reads each source, extracts and cleans its text, drops documents too short to
teach anything, removes exact and near duplicates across all sources, and reports what
happened to every source. A source that fails (missing file, binary file, unreachable URL,
page without text) is *skipped with its reason*, so one bad link does not lose the rest.
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
from fromzero.data.html import extract_text_from_html
from fromzero.data.loading import DOCUMENT_SEPARATOR, existing_path, load_documents, read_file_bytes
from fromzero.data.web import DEFAULT_TIMEOUT, fetch_url_text, is_url
from fromzero.errors import FromzeroError
from fromzero.files import write_text

HTML_SUFFIXES = (".html", ".htm", ".xhtml")
DEFAULT_MIN_CHARS = 100


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


def read_source(source: str, timeout: float = DEFAULT_TIMEOUT) -> list[str]:
    """The cleaned documents of one URL, HTML file, text file or folder of text files."""
    if is_url(source):
        return [fetch_url_text(source, timeout=timeout)]
    path = existing_path(source)
    if path.is_file() and path.suffix.lower() in HTML_SUFFIXES:
        return [extract_text_from_html(read_file_bytes(path), source=str(path))]
    return [doc for doc in (clean_text(doc) for doc in load_documents(path)) if doc]


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
            documents = read_source(str(source), timeout)
        except FromzeroError as err:
            report.error = str(err)
            continue
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


def skip_reason(report: SourceReport, min_chars: int) -> str:
    """Why a source gave nothing, in words, or what was dropped from it."""
    if report.error:
        return report.error
    notes = []
    if report.too_short:
        notes.append(f"{report.too_short} shorter than {min_chars} chars")
    if report.duplicates:
        notes.append(f"{report.duplicates} duplicate{'s' * (report.duplicates > 1)}")
    return ", ".join(notes)


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
