"""The README's ``fromzero serve`` block works as written: its curl commands, run against a real server.

The server serves a tiny GPT with the adapter names the README uses (``sft``, ``dpo``), on a free port
instead of 8000; every curl line must exit 0 and give a 200 with the body OpenAI's API gives.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

pytest.importorskip("uvicorn", reason="the server needs the serve extra (pip install 'fromzero[serve]')")
pytest.importorskip("openai", reason="the server tests need the openai client (pip install openai)")
if shutil.which("curl") is None:
    pytest.skip("curl is not installed", allow_module_level=True)

import string  # noqa: E402

from test_serve_api import running  # noqa: E402


README = Path(__file__).resolve().parents[1] / "README.md"


def readme_serve_block() -> list[str]:
    """The commands of the README's ``shell`` block that starts with ``fromzero serve``."""
    text = README.read_text(encoding="utf-8")
    block = next(b for b in re.findall(r"```shell\n(.*?)```", text, re.DOTALL) if b.startswith("fromzero serve"))
    return [line.strip() for line in block.replace("\\\n", " ").splitlines() if line.strip()]


@pytest.fixture(scope="module")
def models(make_qa_models) -> tuple[Path, Path]:
    """A tiny random GPT whose characters cover the README's questions, and a LoRA adapter tuned on it."""
    facts = [("What is photosynthesis?", "Plants make food from light."), ("Why is the sky blue?", "Air scatters blue.")]
    return make_qa_models("readme", facts, alphabet=string.printable)


def test_the_readme_curl_examples_work(models):
    from fromzero.serve.app import create_app

    serve, *curls = readme_serve_block()
    names = [spec.split("=")[0] for spec in re.findall(r"--adapter (\S+)", serve)]
    assert names == ["sft", "dpo"] and len(curls) >= 4
    base, adapter = models
    with running(create_app(str(base), adapters=[(name, str(adapter)) for name in names])) as url:
        for command in curls:
            argv = shlex.split(command.replace("http://127.0.0.1:8000", url))
            done = subprocess.run(argv + ["--silent", "--show-error", "--fail-with-body"], capture_output=True,
                                  text=True, timeout=60, check=False)
            assert done.returncode == 0, f"{command}\n{done.stdout}{done.stderr}"
            if '"stream": true' in command:
                events = [line[6:] for line in done.stdout.splitlines() if line.startswith("data: ")]
                assert events[-1] == "[DONE]" and json.loads(events[0])["object"] == "chat.completion.chunk"
            else:
                body = json.loads(done.stdout)
                assert body["object"] in ("list", "chat.completion", "text_completion"), body
