"""``fromzero data collect|stats``: results, reported skips and one-line errors for bad inputs."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest

from fromzero.cli import main
from fromzero.console import console
from fromzero.data import load_documents, load_jsonl

PARAGRAPH = (
    "Rice grows best in warm places with plenty of water. Farmers in the delta plant seedlings "
    "in flooded fields during the monsoon, and the harvest comes a few months later."
)
OTHER = (
    "A magnet has two poles, north and south. Like poles push each other away and unlike poles "
    "pull together, which is why a compass needle always points the same way."
)
WEB = (
    "The Indian Ocean lies to the south of India. Trade winds once carried sailing ships across "
    "it to Africa and Arabia, bringing spices, cloth and stories from port to port."
)


def _html(body: str) -> str:
    return f"<html><body><nav>Home | About</nav><article><p>{body}</p></article><script>x()</script></body></html>"


@pytest.fixture
def sources(tmp_path):
    """A folder with good and bad inputs of every kind."""
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "rice.html").write_text(_html(PARAGRAPH), encoding="utf-8")
    (folder / "rice_copy.html").write_text(_html(PARAGRAPH.replace("delta", "Delta ")), encoding="utf-8")
    (folder / "notes.txt").write_text(f"{OTHER}\n\n\nToo short.\n", encoding="utf-8")
    (folder / "nothing.html").write_text("<html><nav>Menu</nav><script>x()</script></html>", encoding="utf-8")
    (folder / "blank.txt").write_text("", encoding="utf-8")
    (folder / "photo.txt").write_bytes(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00")
    return folder


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """An HTTP server on 127.0.0.1 serving one HTML page."""
    root = tmp_path_factory.mktemp("site")
    (root / "ocean.html").write_text(_html(WEB), encoding="utf-8")
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(_QuietHandler, directory=str(root)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_collect_keeps_good_text_and_reports_every_skip(sources, server, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(console, "width", 400)  # one table row per line, easy to search
    out = tmp_path / "corpus.txt"
    unreachable = f"http://127.0.0.1:{_closed_port()}/x.html"
    inputs = ["rice.html", "rice_copy.html", "notes.txt", "nothing.html", "blank.txt", "photo.txt", "absent.txt"]
    argv = [str(sources / name) for name in inputs] + [f"{server}/ocean.html", unreachable]
    assert main(["data", "collect", *argv, "--out", str(out), "--min-chars", "40", "--timeout", "2"]) == 0
    assert load_documents(out) == [PARAGRAPH, OTHER, WEB]
    rows = capsys.readouterr().err.splitlines()
    expected = {
        "rice.html": ("kept", "│ 1 │"),
        "rice_copy.html": ("skipped", "1 duplicate"),
        "notes.txt": ("kept", "1 shorter than 40 chars"),
        "nothing.html": ("skipped", "no readable text"),
        "blank.txt": ("skipped", "is empty"),
        "photo.txt": ("skipped", "looks like a binary file"),
        "absent.txt": ("skipped", "does not exist"),
        "ocean.html": ("kept", "│ 1 │"),
        unreachable: ("skipped", "cannot reach"),
    }
    for name, (result, note) in expected.items():
        (row,) = [row for row in rows if f"{name} " in row and "│" in row]
        assert f"│ {result} " in row and note in " ".join(row.split())
    assert any("wrote 3 document(s)" in row for row in rows)


def test_collect_without_dedup_and_to_jsonl(sources, tmp_path):
    out = tmp_path / "corpus.jsonl"
    files = [str(sources / "rice.html"), str(sources / "rice_copy.html")]
    assert main(["data", "collect", *files, "--out", str(out), "--no-dedup", "--min-chars", "10"]) == 0
    records = load_jsonl(out)
    assert [r["source"] for r in records] == files and records[0]["text"] == PARAGRAPH


@pytest.mark.parametrize("name", ["nothing.html", "blank.txt", "photo.txt", "absent.txt", "unreachable"])
def test_collect_exits_2_and_writes_nothing_when_every_source_fails(sources, tmp_path, capsys, name):
    source = f"http://127.0.0.1:{_closed_port()}/" if name == "unreachable" else str(sources / name)
    out = tmp_path / "out.txt"
    assert main(["data", "collect", source, "--out", str(out), "--timeout", "2"]) == 2
    err = capsys.readouterr().err
    assert "error: nothing collected from 1 source(s)" in err and "Traceback" not in err
    assert list(tmp_path.glob("out.txt*")) == [] and list(tmp_path.glob(".out.txt*")) == []


def test_collect_refuses_a_folder_as_output(sources, tmp_path, capsys):
    assert main(["data", "collect", str(sources / "rice.html"), "--out", str(tmp_path)]) == 2
    assert "is a folder" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("absent.txt", None, "does not exist"),
        ("blank.txt", b"", "is empty"),
        ("photo.txt", b"\xff\xd8\xff\xe0\x00\x10JFIF\x00", "looks like a binary file"),
        ("broken.jsonl", b'{"a": 1}\n{"a": 2\n', "line 2: not valid JSON"),
    ],
)
def test_stats_bad_inputs_are_one_line_errors(tmp_path, capsys, name, content, message):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    assert main(["data", "stats", str(path)]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in captured.err
    assert captured.out == ""


def test_stats_of_text_and_jsonl_as_json(tmp_path, capsys):
    text = tmp_path / "t.txt"
    text.write_text("The cat sat.\n\n\nThe dog ran.\n", encoding="utf-8")
    assert main(["data", "stats", str(text), "--json", "--top", "1"]) == 0
    stats = json.loads(capsys.readouterr().out)[str(text)]
    assert (stats["documents"], stats["words"], stats["top_words"]) == (2, 6, [["the", 2]])

    records = tmp_path / "r.jsonl"
    records.write_text('{"subject": "science"}\nbroken\n{"subject": "civics"}\n', encoding="utf-8")
    assert main(["data", "stats", str(records), "--json", "--skip-bad"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)[str(records)]["by_subject"] == {"civics": 1, "science": 1}
    assert "skipped 1 bad line(s)" in captured.err


def test_help_explains_every_flag(capsys):
    for action in ("collect", "stats", "list"):
        with pytest.raises(SystemExit) as info:
            main(["data", action, "--help"])
        assert info.value.code == 0
    assert "--min-chars" in capsys.readouterr().out


def test_command_line_error_in_a_subprocess(tmp_path):
    missing = tmp_path / "missing.txt"
    result = subprocess.run(
        [sys.executable, "-m", "fromzero", "data", "stats", str(missing)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: {missing} does not exist" and result.stdout == ""


# ---------------------------------------------------------------- JSONL sources: parsed, by --text-field
def _records(path, rows, extra_lines=()):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows) + "".join(f"{line}\n" for line in extra_lines))
    return path


STORIES = [f"Story {i}: the cat sat." for i in range(12)]


def test_prepare_parses_jsonl_by_its_text_field_and_reports_bad_lines(tmp_path, capsys):
    from fromzero.data.shards import load_shards
    from fromzero.tokenizers import load_tokenizer

    path = _records(tmp_path / "stories.jsonl", [{"story": story, "source": "notes"} for story in STORIES])
    out = tmp_path / "shards"
    assert main(["data", "prepare", str(path), "--text-field", "story", "--out", str(out)]) == 0
    shards, tokenizer = load_shards(out), load_tokenizer(out)
    text = tokenizer.decode(shards.train.tolist()) + tokenizer.decode(shards.val.tolist())
    assert sorted(doc for doc in text.split("\n\n\n") if doc) == sorted(STORIES)  # no JSON syntax, no "source"

    broken = _records(tmp_path / "broken.jsonl", [{"text": STORIES[0]}], ["{not json", '{"story": "x"}'])
    assert main(["data", "prepare", str(broken), "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert "broken.jsonl: line 2: not valid JSON" in err and "(and 1 more bad line)" in err and "--skip-bad" in err
    assert not (tmp_path / "b").exists()
    assert main(["data", "prepare", str(broken), "--skip-bad", "--out", str(tmp_path / "b")]) == 0
    assert "skipped 2 bad line(s)" in capsys.readouterr().err


def test_stats_describes_the_text_of_a_jsonl_field(tmp_path, capsys):
    path = _records(tmp_path / "r.jsonl", [{"text": "The cat sat.", "subject": "a"}, {"text": "The dog ran.", "subject": "b"}])
    assert main(["data", "stats", str(path), "--json", "--text-field", "text", "--top", "1"]) == 0
    stats = json.loads(capsys.readouterr().out)[f"{path} (text)"]
    assert (stats["documents"], stats["words"], stats["top_words"]) == (2, 6, [["the", 2]])
    assert main(["data", "stats", "education_qa", "--json", "--text-field", "output"]) == 0
    assert set(json.loads(capsys.readouterr().out)) == {"education_qa/train (output)", "education_qa/test (output)"}


def test_collect_reads_the_text_of_jsonl_sources(tmp_path):
    path = _records(tmp_path / "in.jsonl", [{"text": PARAGRAPH, "source": "a"}, {"text": OTHER, "source": "b"}])
    out = tmp_path / "corpus.txt"
    assert main(["data", "collect", str(path), "--out", str(out), "--min-chars", "10"]) == 0
    assert load_documents(out) == [PARAGRAPH, OTHER]


def test_train_reads_jsonl_by_its_text_field(tmp_path):
    from fromzero.tokenizers import load_tokenizer

    path = _records(tmp_path / "stories.jsonl", [{"story": story, "source": "notes"} for story in STORIES])
    out = tmp_path / "run"
    tiny = ["--preset", "tiny", "--n-layer", "1", "--n-embd", "16", "--n-head", "2", "--block-size", "8",
            "--batch-size", "2", "--eval-batches", "1", "--sample-tokens", "0", "--threads", "1", "--quiet"]
    assert main(["train", "--data", str(path), "--text-field", "story", *tiny, "--max-steps", "1", "--out", str(out)]) == 0
    alphabet = set(load_tokenizer(out).decode(list(range(load_tokenizer(out).vocab_size))))
    assert alphabet == set("".join(STORIES) + "\n")  # the stories' characters, none of the JSON's
