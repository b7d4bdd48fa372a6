"""Shared test fixtures.

Reference data (GPT-2's vocabulary files, tinyshakespeare) lives in ``../shared/data`` beside the
checkout, never in the repository. Tests that need it use the fixtures below, which skip with a
clear reason when it is absent. ``FROMZERO_SHARED`` overrides the location.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("FROMZERO_SHARED", REPO_ROOT.parent / "shared")) / "data"


def _shared(relative: str) -> Path:
    path = SHARED_DATA / relative
    if not path.exists():
        pytest.skip(f"reference data {path} is absent (needs ../shared/data beside the checkout)")
    return path


@pytest.fixture(scope="session")
def gpt2_files() -> dict[str, Path]:
    """Paths of GPT-2's real vocabulary: encoder.json, vocab.bpe and gpt2.tiktoken."""
    folder = _shared("gpt2")
    return {name: folder / name for name in ("encoder.json", "vocab.bpe", "gpt2.tiktoken")}


@pytest.fixture(scope="session")
def tinyshakespeare() -> Path:
    """Path of the tinyshakespeare corpus (1,115,394 ASCII characters)."""
    return _shared("tinyshakespeare/input.txt")


@pytest.fixture(scope="session")
def transformers():
    """The transformers package, the reference many tests compare with; they skip without the hf extra,
    while the tests that need no reference still run."""
    return pytest.importorskip("transformers")


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory, monkeypatch):
    """Point $FROMZERO_HOME at a fresh directory so tests never touch the user's cache."""
    monkeypatch.setenv("FROMZERO_HOME", str(tmp_path_factory.mktemp("fromzero_home")))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")


@pytest.fixture(scope="session")
def word_corpus(tmp_path_factory) -> Path:
    """30 short documents of simple words, separated by two blank lines like the bundled corpora:
    enough text for a tiny GPT to learn something in a few training steps."""
    words = "the cat sat on a mat and the dog ran to the red ball while a bird sang in the old tree".split()
    docs = [" ".join(words[(i + j) % len(words)] for j in range(60)) + "." for i in range(30)]
    path = tmp_path_factory.mktemp("corpus") / "docs.txt"
    path.write_text("\n\n\n".join(docs), encoding="utf-8")
    return path
