"""Data tools: the bundled corpora, loading, cleaning, web text extraction, deduplication, splits.

Typical use::

    from fromzero.data import load_documents, train_val_split
    stories = load_documents("stories")            # a bundled corpus, a .txt or .html file, a folder,
                                                   # or hf:NAME[:SPLIT] (a Hugging Face dataset)
    train, val = train_val_split(stories, 0.1, seed=0)

Modules, one idea each: ``bundled`` (where the corpora are), ``loading`` (reading text and HTML
files, folders, JSONL and ``hf:`` datasets safely), ``cleaning`` (Unicode and whitespace), ``html``
and ``web`` (readable text of pages and URLs), ``dedup`` (exact and near duplicates), ``split``,
``stats``, ``collect`` (all of the above for ``fromzero data collect``) and ``catalog``
(``fromzero data list``).
"""

from fromzero.data.bundled import CORPORA, corpus_path
from fromzero.data.catalog import CorpusInfo, list_corpora
from fromzero.data.cleaning import clean_text
from fromzero.data.collect import collect
from fromzero.data.dedup import deduplicate, exact_key, jaccard, shingles
from fromzero.data.html import extract_text_from_html
from fromzero.data.loading import (
    DOCUMENT_SEPARATOR,
    load_documents,
    load_jsonl,
    load_text,
    read_jsonl,
    split_documents,
)
from fromzero.data.split import train_val_split
from fromzero.data.stats import jsonl_stats, text_stats
from fromzero.data.web import fetch_url, fetch_url_text

__all__ = [
    "CORPORA",
    "DOCUMENT_SEPARATOR",
    "CorpusInfo",
    "clean_text",
    "collect",
    "corpus_path",
    "deduplicate",
    "exact_key",
    "extract_text_from_html",
    "fetch_url",
    "fetch_url_text",
    "jaccard",
    "jsonl_stats",
    "list_corpora",
    "load_documents",
    "load_jsonl",
    "load_text",
    "read_jsonl",
    "shingles",
    "split_documents",
    "text_stats",
    "train_val_split",
]
