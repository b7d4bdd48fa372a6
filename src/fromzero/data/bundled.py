"""The corpora that ship inside the package, and where to find them on disk.

fromzero bundles four small corpora written by its authors (see each data card,
``corpora/<name>.md``): ``stories`` for pretraining, ``education_qa`` for instruction
fine-tuning, ``preferences`` for DPO and ``translation_en_hi`` (English sentences with
their Hindi translations) for translation. They are package data, so they are found with
:mod:`importlib.resources` wherever pip installed the package; no download is ever needed.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from fromzero.errors import InputError, MissingFileError


@dataclass(frozen=True)
class Corpus:
    """One bundled corpus.

    ``path`` is what :func:`corpus_path` returns (a file, or the folder of a split corpus);
    ``parts`` names each data file, e.g. ``{"train": "education_qa/train.jsonl", ...}``.
    """

    name: str
    kind: str  # "text": documents separated by two blank lines; "jsonl": one record per line
    path: str
    parts: dict[str, str]

    @property
    def card(self) -> str:
        return f"{self.name}.md"


CORPORA: dict[str, Corpus] = {
    corpus.name: corpus
    for corpus in (
        Corpus("stories", "text", "stories.txt", {"documents": "stories.txt"}),
        Corpus(
            "education_qa",
            "jsonl",
            "education_qa",
            {"train": "education_qa/train.jsonl", "test": "education_qa/test.jsonl"},
        ),
        Corpus("preferences", "jsonl", "preferences.jsonl", {"pairs": "preferences.jsonl"}),
        Corpus(
            "translation_en_hi",
            "jsonl",
            "translation_en_hi",
            {"train": "translation_en_hi/train.jsonl", "test": "translation_en_hi/test.jsonl"},
        ),
    )
}


def corpora_dir() -> Path:
    """The folder that holds the bundled corpora inside the installed package."""
    root = resources.files("fromzero.data") / "corpora"
    if not isinstance(root, Path):
        raise InputError("bundled corpora need fromzero installed as plain files (not inside a zip)")
    return root


def get_corpus(name: str) -> Corpus:
    """The registry entry for ``name``; a clear error lists the valid names."""
    try:
        return CORPORA[name]
    except KeyError:
        raise InputError(f"unknown corpus {name!r}; bundled corpora: {', '.join(CORPORA)}") from None


def is_corpus_name(source: object) -> bool:
    """True for ``"stories"``-style names and ``"education_qa/train"``-style name/part pairs.

    Names win over relative paths of the same spelling; write ``./stories`` for such a file.
    """
    if not isinstance(source, str):
        return False
    name, _, part = source.partition("/")
    return name in CORPORA and (not part or part in CORPORA[name].parts)


def corpus_path(name: str, part: str | None = None) -> Path:
    """Path of a bundled corpus (``corpus_path("stories")``) or of one part of it.

    ``corpus_path("education_qa")`` is the folder; ``corpus_path("education_qa", "test")``
    (or ``corpus_path("education_qa/test")``) is its held-out test file.
    """
    if part is None and "/" in name:
        name, part = name.split("/", 1)
    corpus = get_corpus(name)
    if part is None:
        relative = corpus.path
    elif part in corpus.parts:
        relative = corpus.parts[part]
    else:
        raise InputError(f"corpus {name!r} has no part {part!r}; parts: {', '.join(corpus.parts)}")
    path = corpora_dir() / relative
    if not path.exists():
        raise MissingFileError(f"bundled corpus file {path} is missing; reinstall fromzero")
    return path


def card_path(name: str) -> Path:
    """Path of the data card ``<name>.md`` that describes a bundled corpus."""
    path = corpora_dir() / get_corpus(name).card
    if not path.exists():
        raise MissingFileError(f"data card {path} is missing; reinstall fromzero")
    return path
