"""Data tools: the bundled corpora, loading, cleaning, web text extraction, deduplication, splits.

Typical use::

    from fromzero.data import load_documents, train_val_split
    stories = load_documents("stories")            # a bundled corpus, a .txt, .html or .jsonl file,
                                                   # a folder, or hf:NAME[:SPLIT] (a Hugging Face dataset)
    train, val = train_val_split(stories, 0.1, seed=0)

Modules, one idea each: ``bundled`` (where the corpora are), ``loading`` (reading text and HTML
files, folders and JSONL safely, with the one rule for the text of JSONL records), ``hf``
(``hf:`` sources: Hugging Face datasets), ``settings`` (defaults the flags share), ``cleaning``
(Unicode and whitespace), ``html`` and ``web`` (readable text of pages and URLs), ``dedup``
(exact and near duplicates), ``split``, ``stats``, ``collect`` (all of the above for
``fromzero data collect``), ``catalog`` (``fromzero data list``), ``shards`` (a corpus tokenized
once into memory-mapped token files) and ``prepare`` (choosing the tokenizer and writing the
shards: ``fromzero data prepare``).
"""

from fromzero.lazy import lazy_exports

# Imported on first use (see fromzero.lazy), so `fromzero --help` stays instant.
_EXPORTS = {
    "CORPORA": "bundled",
    "corpus_path": "bundled",
    "CorpusInfo": "catalog",
    "list_corpora": "catalog",
    "clean_text": "cleaning",
    "deduplicate": "dedup",
    "exact_key": "dedup",
    "jaccard": "dedup",
    "shingles": "dedup",
    "extract_text_from_html": "html",
    "fetch_url_text": "html",
    "DOCUMENT_SEPARATOR": "settings",
    "load_documents": "loading",
    "load_jsonl": "loading",
    "load_jsonl_documents": "loading",
    "load_text": "loading",
    "read_jsonl": "loading",
    "split_documents": "loading",
    "train_val_split": "split",
    "train_val_documents": "split",
    "jsonl_stats": "stats",
    "text_stats": "stats",
    "fetch_url": "web",
    "TokenShards": "shards",
    "load_shards": "shards",
    "write_shards": "shards",
    "build_tokenizer": "prepare",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
