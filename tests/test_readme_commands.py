"""Every command the README shows, and every command the program itself suggests, runs.

The commands are read from README.md (its ``bash`` blocks and every inline ```fromzero ...``` span)
and run in order in an empty folder, as a new user would type them; after each one, any command it
prints as advice (``next: `fromzero ...` ``, ``try: fromzero ...``) is run as well. A span holding a
placeholder (an upper-case word such as ``DIR`` or ``URL_OR_FILE``, or ``...``) is a pattern, not a
command, and is skipped.

Offline, hub names (``gpt2``, ``distilgpt2``) resolve to a small random GPT-2 saved with
``transformers`` and GPT-2's vocabulary comes from ``../shared/data``. In the default suite the
long trainings get a few steps only (``FAST_FLAGS``); ``-m slow`` runs every command verbatim.
"""

from __future__ import annotations

import io
import re
import shlex
import shutil
from pathlib import Path
from unittest import mock

import pytest

from fromzero.cli import main

README = Path(__file__).resolve().parents[1] / "README.md"
PLACEHOLDER = re.compile(r"\b[A-Z][A-Z_]{1,}\b|\.\.\.")
HINT = re.compile(r"(?:next|try): `?(fromzero [^`\n]+?)`?(?:$|\n)", re.M)
# Appended in the default suite only, so that the README's long trainings take seconds.
FAST_FLAGS = {
    ("train",): ["--max-steps", "20", "--eval-interval", "10"],
    ("numpy-net", "train"): ["--epochs", "1", "--hidden", "64"],
    ("quickstart",): ["--pretrain-steps", "20", "--sft-epochs", "1", "--dpo-epochs", "1"],
    ("finetune", "sft"): ["--epochs", "1"],
    ("finetune", "dpo"): ["--epochs", "1"],
    ("evaluate",): ["--questions", "4", "--max-tokens", "2000"],
    ("word2vec", "train"): ["--epochs", "2"],
    ("seq2seq", "train"): ["--max-steps", "20", "--eval-interval", "10"],
}


def readme_commands() -> list[str]:
    text = README.read_text(encoding="utf-8")
    found: list[str] = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.splitlines():
            found += [part.strip() for part in line.split("&&") if part.strip().startswith("fromzero ")]
    found += re.findall(r"`(fromzero [^`]+)`", text)
    unique = list(dict.fromkeys(found))
    return [command for command in unique if not PLACEHOLDER.search(command.removeprefix("fromzero "))]


def test_the_readme_shows_runnable_commands():
    commands = readme_commands()
    assert len(commands) >= 15, commands
    assert "fromzero train" in commands and "fromzero --help" in commands


@pytest.fixture
def offline_hub(tmp_path, monkeypatch, gpt2_files, transformers):
    """Hub names resolve to a tiny random GPT-2; GPT-2's vocabulary is in $FROMZERO_HOME."""
    from fromzero.paths import fromzero_home

    vocab = fromzero_home() / "gpt2"
    vocab.mkdir(parents=True, exist_ok=True)
    shutil.copy(gpt2_files["gpt2.tiktoken"], vocab / "gpt2.tiktoken")
    model_dir = tmp_path / "hub-gpt2"
    config = transformers.GPT2Config(n_layer=2, n_head=2, n_embd=32, n_positions=1024)
    transformers.GPT2LMHeadModel(config).save_pretrained(model_dir)
    huggingface_hub = pytest.importorskip("huggingface_hub")
    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda *args, **kwargs: str(model_dir))


def _run_all(commands: list[str], fast: bool, capsys) -> list[str]:
    queue, done = list(commands), []
    while queue:
        command = queue.pop(0)
        argv = shlex.split(command)[1:]
        extra = next((flags for prefix, flags in FAST_FLAGS.items() if tuple(argv[: len(prefix)]) == prefix), [])
        try:  # `fromzero chat` reads its questions from stdin, as from a script
            with mock.patch("sys.stdin", io.StringIO("What is photosynthesis?\nquit\n")):
                status = main(argv + (extra if fast else []))
        except SystemExit as exit_:  # --help
            status = exit_.code
        out = capsys.readouterr()
        assert status == 0, f"`{command}` exited {status}:\n{out.err[-2000:]}"
        done.append(command)
        for hint in HINT.findall(out.out + out.err):
            hint = hint.strip()
            if hint not in done and hint not in queue:
                queue.insert(0, hint)
    return done


def test_every_readme_command_and_hint_runs(tmp_path, monkeypatch, capsys, offline_hub):
    monkeypatch.chdir(tmp_path)
    done = _run_all(readme_commands(), fast=True, capsys=capsys)
    assert len(done) > len(readme_commands())  # the hints ran too


@pytest.mark.slow
def test_every_readme_command_runs_verbatim(tmp_path, monkeypatch, capsys, offline_hub):
    monkeypatch.chdir(tmp_path)
    _run_all(readme_commands(), fast=False, capsys=capsys)
