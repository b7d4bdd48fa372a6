"""The bundled corpora: present, big enough, well-formed, free of duplicates, test split held out."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from fromzero.cli import main
from fromzero.data import CORPORA, corpus_path, deduplicate, load_documents, load_jsonl
from fromzero.data.bundled import card_path
from fromzero.data.dedup import normalise_for_dedup

REPO_ROOT = Path(__file__).resolve().parents[1]


def _key(*texts: str) -> str:
    return " | ".join(normalise_for_dedup(text) for text in texts)


def _non_empty_strings(record: dict, fields: tuple[str, ...]) -> bool:
    return all(isinstance(record.get(name), str) and record[name].strip() for name in fields)


@pytest.mark.parametrize("name", list(CORPORA))
def test_every_corpus_has_its_files_and_a_data_card(name):
    for part in CORPORA[name].parts:
        assert corpus_path(name, part).stat().st_size > 0
    card = card_path(name).read_text(encoding="utf-8")
    first_line = next(line for line in card.splitlines() if line.strip())
    assert len(first_line.lstrip("# ")) > 20, "the card's first line describes the corpus"
    assert "CC-BY-4.0" in card or "CC BY 4.0" in card


def test_stories_count_size_and_no_duplicates():
    stories = load_documents("stories")
    assert len(stories) >= 250
    assert corpus_path("stories").stat().st_size >= 250_000
    result = deduplicate(stories)
    assert result.exact_duplicates == [], "identical stories"
    assert result.near_duplicates == [], "(index, index of the earlier story, Jaccard similarity)"


def test_education_qa_schema_counts_and_held_out_test_split():
    train, test = load_jsonl("education_qa/train"), load_jsonl("education_qa/test")
    assert len(train) >= 400 and len(test) >= 60
    for record in train + test:
        assert _non_empty_strings(record, ("instruction", "output", "subject")), record
        assert isinstance(record.get("input"), str), record
        assert record.get("grade") not in (None, ""), record
    train_keys = [_key(r["instruction"], r["input"]) for r in train]
    test_keys = [_key(r["instruction"], r["input"]) for r in test]
    assert len(set(train_keys)) == len(train_keys), "duplicate questions in train"
    assert len(set(test_keys)) == len(test_keys), "duplicate questions in test"
    assert not set(train_keys) & set(test_keys), "test questions also appear in train"


def test_preferences_schema_count_and_no_duplicates():
    pairs = load_jsonl("preferences")
    assert len(pairs) >= 150
    for pair in pairs:
        assert _non_empty_strings(pair, ("prompt", "chosen", "rejected")), pair
        assert _key(pair["chosen"]) != _key(pair["rejected"]), pair
    prompts = [_key(pair["prompt"]) for pair in pairs]
    assert len(set(prompts)) == len(prompts), "duplicate prompts"


def test_data_list_and_stats_commands(capsys):
    assert main(["data", "list", "--json"]) == 0
    listing = {info["name"]: info for info in json.loads(capsys.readouterr().out)}
    assert set(listing) == set(CORPORA)
    assert listing["stories"]["counts"]["documents"] == len(load_documents("stories"))
    assert all(info["size_bytes"] > 0 and info["description"] for info in listing.values())
    assert all(re.fullmatch(r"\d+ \(\d{4}-\d\d-\d\d\)", info["version"]) for info in listing.values()), listing
    assert main(["data", "list"]) == 0 and "education_qa" in capsys.readouterr().out
    assert main(["data", "stats", "stories"]) == 0
    assert "unique characters" in capsys.readouterr().out


@pytest.mark.slow
def test_corpora_ship_inside_the_wheel(tmp_path):
    """Build a wheel from a copy of the sources and check every corpus file and card is inside."""
    pytest.importorskip("setuptools", reason="building the wheel offline needs setuptools installed")
    for item in ("pyproject.toml", "README.md", "src"):
        copy = shutil.copytree if (REPO_ROOT / item).is_dir() else shutil.copy
        copy(REPO_ROOT / item, tmp_path / item)
    pip_wheel = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
    subprocess.run([*pip_wheel, "-w", str(tmp_path / "dist"), str(tmp_path)], check=True, timeout=300)
    (wheel,) = (tmp_path / "dist").glob("fromzero-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for name, corpus in CORPORA.items():
        for relative in [*corpus.parts.values(), corpus.card]:
            assert f"fromzero/data/corpora/{relative}" in names, relative
    for level in (REPO_ROOT / "src" / "fromzero" / "lessons").glob("level*"):
        for text in ("lesson.md", "exercises.md"):
            assert f"fromzero/lessons/{level.name}/{text}" in names, (level.name, text)
    assert {"fromzero/kernels/gemv.c", "fromzero/kernels/decode_step.c"} <= set(names)  # compiled at first use
    static = REPO_ROOT / "src" / "fromzero" / "serve" / "static"
    for page in static.glob("*.*") if static.is_dir() else ():
        assert f"fromzero/serve/static/{page.name}" in names, page.name

    # installed from the wheel into a fresh venv, run outside the repository: the course is there
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True, timeout=120)
    subprocess.run([str(venv / "bin" / "pip"), "install", "--no-deps", "-q", str(wheel)], check=True, timeout=300)
    home = {**os.environ, "FROMZERO_HOME": str(tmp_path / "home")}
    where = subprocess.run([str(venv / "bin" / "python"), "-c", "import fromzero; print(fromzero.__file__)"],
                           cwd=tmp_path, env=home, capture_output=True, text=True, check=True)
    assert str(venv) in where.stdout, where.stdout
    listing = subprocess.run([str(venv / "bin" / "fromzero"), "learn"], cwd=tmp_path, env=home, capture_output=True,
                             text=True, check=True, timeout=120)
    assert "Counting bigrams" in listing.stdout
    step = subprocess.run([str(venv / "bin" / "fromzero"), "learn", "1.1", "--quick"], cwd=tmp_path, env=home,
                          capture_output=True, text=True, check=True, timeout=300)
    assert "next step: fromzero learn" in step.stdout
