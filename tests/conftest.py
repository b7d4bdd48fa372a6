"""Shared test fixtures.

Reference data (GPT-2's vocabulary files, tinyshakespeare) lives in ``../shared/data`` beside the
checkout, never in the repository. Tests that need it use the fixtures below, which skip with a
clear reason when it is absent. ``FROMZERO_SHARED`` overrides the location.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import socket
import subprocess
import sys
import time
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


# a few (question, better answer, worse answer) triples that a tiny model learns to prefer
TOY_PREFERENCE_PAIRS = [("What colour is the sky?", "The sky is blue.", "The sky is green."),
                        ("What do cats say?", "Cats say meow.", "Cats say woof."),
                        ("What do dogs say?", "Dogs say woof.", "Dogs say meow."),
                        ("What is two plus two?", "Two plus two is four.", "Two plus two is five."),
                        ("Where do fish live?", "Fish live in water.", "Fish live in trees."),
                        ("What do cows give?", "Cows give milk.", "Cows give eggs.")]


def _pinned_kernel() -> str:
    from fromzero.generation.inference_layers import onednn_packing_works

    return "packed" if onednn_packing_works() else "plain"


def _pinned_bf16_kernel() -> str:
    import torch

    from fromzero.generation.inference_layers import onednn_packing_works

    return "packed" if onednn_packing_works(torch.bfloat16) else "plain"


def _pinned_train_dtype() -> str:
    from fromzero.machine import cpu_has_fast_bf16

    return "bfloat16" if cpu_has_fast_bf16() else "float32"


_PINNED_KERNEL = _pinned_kernel()
_PINNED_BF16_KERNEL = _pinned_bf16_kernel()
_PINNED_TRAIN_DTYPE = _pinned_train_dtype()


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory, monkeypatch):
    """Point $FROMZERO_HOME at a fresh directory so tests never touch the user's cache."""
    monkeypatch.setenv("FROMZERO_HOME", str(tmp_path_factory.mktemp("fromzero_home")))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # one kernel per weight mode and one training precision everywhere: choices measured afresh in each
    # test's home could differ between a server (or a resumed run) and the reference it is compared
    # with. tests/test_tuning.py lifts this to test the measured choices themselves.
    monkeypatch.setenv("FROMZERO_LINEAR_KERNEL", _PINNED_KERNEL)
    monkeypatch.setenv("FROMZERO_BF16_KERNEL", _PINNED_BF16_KERNEL)
    monkeypatch.setenv("FROMZERO_INT8_KERNEL", "torch")
    monkeypatch.setenv("FROMZERO_TRAIN_DTYPE", _PINNED_TRAIN_DTYPE)  # --dtype auto as the rule had it
    monkeypatch.setenv("FROMZERO_ATTENTION_PRECISION", "autocast")  # attention in autocast's dtype, as torch has it
    monkeypatch.setenv("FROMZERO_ACTIVATION_KERNEL", "torch")  # GELU in training by torch's kernel
    # one thread, not as many as the other test worker leaves free: a training step's last bits depend on
    # the count, and runs compared bit for bit must not differ by the load (tests/test_tuning.py lifts it)
    monkeypatch.setenv("FROMZERO_THREADS", "1")
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


@pytest.fixture(scope="session")
def make_qa_models(tmp_path_factory):
    """``make_qa_models(name, facts, alphabet=None) -> (base folder, adapter folder)``: a random tiny GPT
    with a character tokenizer and a LoRA adapter tuned on it for one epoch with the qa template, in
    seconds: what the chat, server and web-page tests talk to. ``alphabet`` is the text the tokenizer
    is trained on (default: the facts and the template's characters)."""
    import json

    import torch

    from fromzero.finetune.sft import SFTConfig, sft
    from fromzero.models import GPT, GPTConfig
    from fromzero.tokenizers import CharTokenizer

    def make(name: str, facts: list[tuple[str, str]], alphabet: str | None = None) -> tuple[Path, Path]:
        root = tmp_path_factory.mktemp(name)
        data = root / "qa.jsonl"
        data.write_text("".join(json.dumps({"question": q, "answer": a}) + "\n" for q, a in facts * 3),
                        encoding="utf-8")
        tokenizer = CharTokenizer.train(alphabet or "".join(q + a for q, a in facts) + "### Question:\nAnswer\n<>/=()'\"!")
        torch.manual_seed(0)
        GPT(GPTConfig.preset("tiny", vocab_size=tokenizer.vocab_size, block_size=96)).save_pretrained(root / "base")
        tokenizer.save(root / "base")
        sft(SFTConfig(model=str(root / "base"), data=str(data), out=str(root / "tuned"), epochs=1, batch_size=4,
                      lora_r=4, device="cpu", dtype="float32"), quiet=True)
        return root / "base", root / "tuned"

    return make


@pytest.fixture
def run_level(monkeypatch):
    """``run_level(level, out) -> {step key: its figures}``: every step of a course level, in quick mode,
    through ``fromzero learn``."""
    from fromzero.cli import main
    from fromzero.lessons import runner
    from fromzero.lessons.course import find_level

    def run(level: int, out) -> dict[str, dict]:
        figures: dict[str, dict] = {}
        real = runner.run_step

        def spy(key, quick, out, _chain=()):
            step = real(key, quick, out, _chain)
            figures[key] = step.figures
            return step

        monkeypatch.setattr(runner, "run_step", spy)
        for step in find_level(level).steps:
            assert main(["learn", step.key, "--quick", "--out", str(out)]) == 0
        return figures

    return run


@contextlib.contextmanager
def serve_process(args: list[str], env: dict[str, str] | None = None):
    """``fromzero serve ARGS`` as a real process on a free port of 127.0.0.1; yields ``(process, port)``
    once ``/health`` answers, and kills it at the end (tests that need a crash kill it themselves)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen([sys.executable, "-m", "fromzero", "serve", *args, "--port", str(port)],
                               env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None and time.monotonic() < deadline, process.communicate()[1][-2000:]
            with contextlib.suppress(OSError):
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                try:
                    connection.request("GET", "/health")
                    if connection.getresponse().status == 200:
                        break
                finally:
                    connection.close()
            time.sleep(0.1)
        yield process, port
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)
        process.stderr.close()
