"""Text sources beyond single files: ``hf:`` datasets (built locally, fully offline) and folders
mixing text, HTML and files that cannot be read, through ``load_documents`` and ``collect``."""

from __future__ import annotations

import json
import re
import sys

import pytest

from fromzero.cli import main
from fromzero.console import console
from fromzero.data import load_documents, load_text
from fromzero.data.collect import collect
from fromzero.data.collect import skip_reason
from fromzero.data.hf import HfSource, parse_hf_source
from fromzero.errors import CorruptFileError, InputError, MissingFileError, OfflineError

STORIES = ["Once upon a time a fox found a red ball.", "A small boat sailed home.\n\n\n\nThe end."]
STORY_TEXT = ("  Tim liked trains.  ", "Sue liked boats.")


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")


@pytest.fixture
def hf(monkeypatch, tmp_path):
    """``datasets`` with its cache in tmp_path and the Hub offline, whatever the import order."""
    datasets = pytest.importorskip("datasets")  # in the hf extra (CI installs it), like transformers
    import huggingface_hub

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf_cache"))
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    return datasets


@pytest.fixture
def local_dataset(hf, tmp_path):
    """A dataset folder as ``load_dataset`` reads it: one JSONL file per split."""
    folder = tmp_path / "stories"
    folder.mkdir()
    rows = [{"text": text, "story": story, "id": i} for i, (text, story) in enumerate(zip(STORIES, STORY_TEXT))]
    blank_rows = [{"text": "   ", "story": "", "id": 8}, {"text": None, "story": None, "id": 9}]
    _jsonl(folder / "train.jsonl", rows + blank_rows)
    _jsonl(folder / "validation.jsonl", [{"text": "Held out story.", "story": "x", "id": 10}])
    return folder


def test_hf_source_syntax():
    assert parse_hf_source("hf:roneneldan/TinyStories") == HfSource("roneneldan/TinyStories")
    assert parse_hf_source("hf:a/b:train[:10%]:column=story") == HfSource("a/b", "train[:10%]", "story")
    assert parse_hf_source("hf:w:config=raw:test") == HfSource("w", "test", "text", "raw")
    for bad in ("hf:", "hf:a:train:test", "hf:a:colour=x", "hf:a:column="):
        with pytest.raises(InputError, match="hf:NAME"):
            parse_hf_source(bad)
    assert parse_hf_source("hf:a/b:rows=1000") == HfSource("a/b", rows=1000)
    for bad in ("hf:a:rows=0", "hf:a:rows=ten", "hf:a:rows=-3"):
        with pytest.raises(InputError, match="positive whole number"):
            parse_hf_source(bad)


def test_hf_rows_are_documents_everywhere_text_is_loaded(local_dataset, tmp_path):
    from fromzero.data.prepare import prepare
    from fromzero.data.shards import HEADER_NAME

    source = f"hf:{local_dataset}"
    assert load_documents(source) == STORIES  # a row is one document even with blank lines in it
    assert load_text(source) == "\n\n\n".join(STORIES)
    shards = prepare(source, "char", tmp_path / "shards", val_fraction=0.5)
    header = json.loads((shards.directory / HEADER_NAME).read_text(encoding="utf-8"))
    assert header["documents"] == {"train": 1, "val": 1}


def test_hf_split_and_column_choices(local_dataset):
    assert load_documents(f"hf:{local_dataset}:validation") == ["Held out story."]
    assert load_documents(f"hf:{local_dataset}:column=story") == [text.strip() for text in STORY_TEXT]
    assert load_documents(f"hf:{local_dataset}:train[:1]") == STORIES[:1]
    assert load_documents(f"hf:{local_dataset / 'validation.jsonl'}") == ["Held out story."]


def test_hf_first_rows_are_streamed(local_dataset, hf, tmp_path, monkeypatch):
    streamed = []
    load_dataset = hf.load_dataset
    monkeypatch.setattr(hf, "load_dataset", lambda *a, **k: streamed.append(k.get("streaming")) or load_dataset(*a, **k))
    assert load_documents(f"hf:{local_dataset}:rows=1") == STORIES[:1]
    assert load_documents(f"hf:{local_dataset}:validation:rows=5") == ["Held out story."]
    assert load_documents(f"hf:{local_dataset}:column=story:rows=2") == [text.strip() for text in STORY_TEXT]
    assert streamed == [True, True, True]  # nothing past the first rows is downloaded
    with pytest.raises(InputError, match="no 'title' column; its columns are text"):
        load_documents(f"hf:{local_dataset}:column=title:rows=1")
    rows = hf.Dataset.from_dict({"text": ["First saved story.", "Second saved story."]})
    rows.save_to_disk(tmp_path / "saved")
    assert load_documents(f"hf:{tmp_path / 'saved'}:rows=1") == ["First saved story."]


def test_unknown_hub_dataset_streamed_offline_is_one_line_offline_error(hf):
    with pytest.raises(OfflineError, match="cannot download dataset 'no-such-user/no-such-dataset'"):
        load_documents("hf:no-such-user/no-such-dataset:rows=10")


def test_hf_dataset_without_a_text_column_lists_its_columns(hf, tmp_path):
    folder = tmp_path / "tales"
    folder.mkdir()
    _jsonl(folder / "train.jsonl", [{"story": "A tale.", "id": 1}])
    with pytest.raises(InputError) as info:
        load_documents(f"hf:{folder}")
    message = str(info.value)
    assert "no 'text' column" in message and "story (string), id (int64)" in message
    assert ":column=NAME" in message and "\n" not in message
    with pytest.raises(InputError, match="'id' .* holds int64, not text"):
        load_documents(f"hf:{folder}:column=id")


def test_hf_configurations_of_a_local_dataset(hf, tmp_path):
    folder = tmp_path / "greetings"
    for config, text in (("en", "Hello there."), ("fr", "Bonjour.")):
        (folder / config).mkdir(parents=True)
        _jsonl(folder / config / "train.jsonl", [{"text": text}])
    configs = "".join(f"- config_name: {name}\n  data_files: {name}/*.jsonl\n" for name in ("en", "fr"))
    (folder / "README.md").write_text(f"---\nconfigs:\n{configs}---\n", encoding="utf-8")
    assert load_documents(f"hf:{folder}:config=fr") == ["Bonjour."]
    with pytest.raises(InputError, match=r"Config name is missing.*'en', 'fr'.*config=NAME") as info:
        load_documents(f"hf:{folder}")
    assert "\n" not in str(info.value)


def test_hf_folder_saved_with_save_to_disk(hf, tmp_path):
    rows = hf.Dataset.from_dict({"text": ["First saved story.", "Second saved story."]})
    rows.save_to_disk(tmp_path / "one")
    hf.DatasetDict({"train": rows, "test": rows.select([1])}).save_to_disk(tmp_path / "both")
    assert load_documents(f"hf:{tmp_path / 'one'}") == ["First saved story.", "Second saved story."]
    assert load_documents(f"hf:{tmp_path / 'both'}:test") == ["Second saved story."]
    with pytest.raises(InputError, match="single saved split; leave out :test"):
        load_documents(f"hf:{tmp_path / 'one'}:test")
    with pytest.raises(InputError, match="no split 'validation'; its splits are train, test"):
        load_documents(f"hf:{tmp_path / 'both'}:validation")


def test_unknown_hub_dataset_offline_is_one_line_offline_error(hf):
    with pytest.raises(OfflineError) as info:
        load_documents("hf:no-such-user/no-such-dataset")
    message = str(info.value)
    assert "cannot download dataset 'no-such-user/no-such-dataset'" in message and "HF_HUB_OFFLINE" in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("source", "error", "words"),
    [
        ("{folder}:test", InputError, "Unknown split"),
        ("./no/such/folder", MissingFileError, "does not exist"),
        ("absent/deeper/path", MissingFileError, "Couldn't find any data file"),
        ("{broken}", CorruptFileError, "JSON parse error"),
    ],
    ids=["unknown-split", "missing-folder", "missing-path", "broken-jsonl"],
)
def test_hf_bad_sources_are_one_line_errors(local_dataset, tmp_path, monkeypatch, source, error, words):
    monkeypatch.chdir(tmp_path)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "train.jsonl").write_text('{"text": "fine"}\n{not json\n', encoding="utf-8")
    with pytest.raises(error, match=words) as info:
        load_documents("hf:" + source.format(folder=local_dataset, broken=broken))
    assert "\n" not in str(info.value)


def test_hf_without_the_datasets_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # makes `import datasets` fail
    with pytest.raises(InputError, match="need the `datasets` package: pip install datasets"):
        load_documents("hf:roneneldan/TinyStories")


BOILERPLATE_PAGE = """<html><head><title>Farm news</title><script>track("visit");</script>
<style>p { color: red }</style></head><body>
<nav><a href="/">Home</a> | <a href="/about">About us</a></nav>
<article><h1>Rice</h1><p>Rice grows best in warm places with plenty of water.</p></article>
<footer>Copyright 2024, all rights reserved</footer><script>more()</script></body></html>"""
PAGE_TEXT = "Rice\n\nRice grows best in warm places with plenty of water."


@pytest.fixture
def mixed_folder(tmp_path):
    """A folder with text, HTML (.html, .htm), a binary .txt, a page without text and an image."""
    folder = tmp_path / "mixed"
    (folder / "web").mkdir(parents=True)
    (folder / "notes.txt").write_text("A magnet has two poles.\n\n\nLike poles push apart.\n", encoding="utf-8")
    (folder / "web" / "rice.html").write_text(BOILERPLATE_PAGE, encoding="utf-8")
    (folder / "web" / "old.htm").write_bytes("<p>Caf\u00e9 au lait.</p>".encode("utf-8"))
    (folder / "menu.html").write_text("<nav>Home</nav><script>x()</script>", encoding="utf-8")
    (folder / "scan.txt").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    (folder / "photo.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    return folder


def test_folder_documents_include_html_text_and_stop_at_a_bad_file(mixed_folder):
    for bad in ("menu.html", "scan.txt"):
        with pytest.raises((InputError, CorruptFileError), match=re.escape(str(mixed_folder / bad))):
            load_documents(mixed_folder)
        (mixed_folder / bad).unlink()
    assert load_documents(mixed_folder) == [
        "A magnet has two poles.",
        "Like poles push apart.",
        "Caf\u00e9 au lait.",
        PAGE_TEXT,
    ]
    assert load_text(mixed_folder / "web" / "rice.html") == PAGE_TEXT


def test_collect_reads_a_mixed_folder_and_reports_every_file(mixed_folder):
    collection = collect([mixed_folder], min_chars=1)
    documents = ["A magnet has two poles.", "Like poles push apart.", "Caf\u00e9 au lait.", PAGE_TEXT]
    assert collection.documents == documents
    (report,) = collection.reports
    assert report.files_read == {"html": 2, "txt": 1}
    assert report.files_skipped == [
        "menu.html has no readable text (only markup, scripts or navigation)",
        "scan.txt looks like a binary file, not text",
    ]
    assert report.files_ignored == ["photo.png"]
    assert skip_reason(report, 1) == (
        "read 2 .html + 1 .txt files; skipped 2 (menu.html has no readable text (only markup, scripts or "
        "navigation); scan.txt looks like a binary file, not text); ignored 1 not .txt or .html (photo.png)"
    )


def test_collect_command_names_the_files_of_a_folder(mixed_folder, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(console, "width", 400)  # one table row per line
    out = tmp_path / "corpus.txt"
    assert main(["data", "collect", str(mixed_folder), "--out", str(out), "--min-chars", "23"]) == 0
    (row,) = [row for row in capsys.readouterr().err.splitlines() if str(mixed_folder) in row and "│" in row]
    assert "│ kept " in row and "read 2 .html + 1 .txt files; skipped 2 (menu.html" in row
    assert "2 shorter than 23 chars" in row
    assert load_documents(out) == ["A magnet has two poles.", PAGE_TEXT]


def test_collect_folder_whose_files_all_fail_is_skipped_with_the_reasons(mixed_folder):
    for good in ("notes.txt", "web/rice.html", "web/old.htm"):
        (mixed_folder / good).unlink()
    (report,) = collect([mixed_folder]).reports
    assert not report.ok
    assert skip_reason(report, 100).startswith("read 0 files; skipped 2 (menu.html has no readable text")


def test_hub_out_of_reach_fails_at_once_instead_of_retrying(monkeypatch, tmp_path):
    """No network, HF_HUB_OFFLINE unset: one failed request, then offline mode, not 25 s of retries."""
    import socket
    import time

    datasets = pytest.importorskip("datasets")
    import huggingface_hub

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf_cache"))
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)

    def no_network(*args, **kwargs):
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

    waits = []
    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    monkeypatch.setattr(time, "sleep", waits.append)  # the back-off between retries
    with pytest.raises(OfflineError) as info:
        load_documents("hf:no-such-user/no-such-dataset")
    assert waits == []  # not one retry
    message = str(info.value)
    assert "cannot download dataset 'no-such-user/no-such-dataset': the Hugging Face Hub cannot be reached" in message
    assert "\n" not in message
    assert datasets.config.HF_HUB_OFFLINE is False  # offline mode lasted only for this read
