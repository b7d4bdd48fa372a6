"""The whole loop, end to end: people choose answers on a running server, a DPO adapter learns from their
choices, and the same server process serves it without a restart.

A real ``fromzero serve`` process runs a tiny random GPT on 127.0.0.1 with an API key. The choices go
through ``POST /v1/feedback`` as the chat page sends them after "regenerate, then this one is better"
(the better answer of each pair is the one people would pick, on either side); ``fromzero finetune
dpo --from-feedback DIR --serve-to URL`` then exports the pairs, trains, and loads the adapter into
that process, which lists it in ``/v1/models`` and answers with it. On the pairs the run held out,
the adapter prefers the better answer more often than the model it started from.
"""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request

import pytest
import torch

from conftest import TOY_PREFERENCE_PAIRS as PAIRS  # (question, better, worse)
from conftest import serve_process
from fromzero.cli import main
from fromzero.evaluate.preferences import heldout_pairs, preference_score
from fromzero.finetune.templates import get_template
from fromzero.finetune.tuned import load_tuned
from fromzero.models import GPT, GPTConfig
from fromzero.tokenizers import CharTokenizer

KEY = "loop-key"


def call(port: int, method: str, path: str, body: dict | None = None, key: str | None = KEY) -> tuple[int, dict]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method,
                                     data=None if body is None else json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json",
                                              **({"Authorization": f"Bearer {key}"} if key else {})})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


@pytest.fixture
def base(tmp_path):
    """A random tiny GPT whose character tokenizer knows the pairs' text."""
    tokenizer = CharTokenizer.train("".join("".join(p) for p in PAIRS) + "### Question:\nAnswer\n()0123456789")
    torch.manual_seed(0)
    GPT(GPTConfig.preset("tiny", vocab_size=tokenizer.vocab_size, block_size=96)).save_pretrained(tmp_path / "base")
    tokenizer.save(tmp_path / "base")
    return tmp_path / "base"


@pytest.fixture
def server(base, tmp_path):
    """``(process, port)``: ``fromzero serve`` on a free port, feedback kept in ``tmp_path / "feedback"``."""
    with serve_process(["--model", str(base), "--device", "cpu", "--feedback-dir", str(tmp_path / "feedback")],
                       {"FROMZERO_API_KEY": KEY}) as running:
        yield running


def test_choices_on_the_server_become_an_adapter_it_serves_without_a_restart(base, server, tmp_path, monkeypatch):
    process, port = server
    pid = process.pid
    for i in range(8):
        for n, (question, better, worse) in enumerate(PAIRS):
            first, second = (better, worse) if (i + n) % 2 else (worse, better)  # the better one on either side
            status, stored = call(port, "POST", "/v1/feedback", {
                "kind": "choice", "model": "base", "messages": [{"role": "user", "content": f"{question} ({i})"}],
                "answer": first, "other": second, "chosen": 1 if first == better else 2,
                "settings": {"temperature": 0.7, "max_tokens": 40}})
            assert status == 200 and stored["stored"] is True, stored

    monkeypatch.setenv("FROMZERO_API_KEY", KEY)  # --serve-to sends the server's key, as `fromzero serve` reads it
    out = tmp_path / "from-feedback"
    assert main(["finetune", "dpo", "--model", str(base), "--from-feedback", str(tmp_path / "feedback"),
                 "--out", str(out), "--serve-to", f"http://127.0.0.1:{port}", "--val-fraction", "0.25",
                 "--epochs", "2", "--batch-size", "4", "--lr", "1e-2", "--warmup-steps", "2", "--lora-r", "4",
                 "--lora-dropout", "0", "--device", "cpu", "--dtype", "float32", "--quiet"]) == 0

    status, listed = call(port, "GET", "/v1/models")
    assert status == 200
    assert {m["id"]: m["fromzero"]["kind"] for m in listed["data"]} == {"base": "base", "from-feedback": "adapter"}
    status, answer = call(port, "POST", "/v1/chat/completions", {
        "model": "from-feedback", "messages": [{"role": "user", "content": "What do cats say? (3)"}],
        "temperature": 0, "max_tokens": 8})
    assert status == 200 and answer["model"] == "from-feedback"
    assert process.poll() is None and process.pid == pid  # the same process, never restarted

    record = json.loads((out / "finetune.json").read_text())
    assert record["settings"]["data"].startswith(str(tmp_path / "feedback"))  # the exported pairs, kept
    held_out = heldout_pairs([record])
    assert len(held_out) == 12
    template = get_template("qa")
    tuned = load_tuned(str(out))
    reference = load_tuned(str(base))
    after = preference_score(tuned.model, tuned.tokenizer, template, held_out)
    before = preference_score(reference.model, reference.tokenizer, template, held_out)
    assert after.accuracy > before.accuracy and after.accuracy_per_token > before.accuracy_per_token


def test_too_few_pairs_and_an_unreachable_server_are_one_line_errors(base, tmp_path, capsys):
    from fromzero.chat.feedback import Feedback, FeedbackStore

    folder = tmp_path / "feedback"
    question, better, worse = PAIRS[0]
    FeedbackStore(folder).add(Feedback("choice", [{"role": "user", "content": question}], better, other=worse,
                                       chosen=1, model=str(base)))
    flags = ["finetune", "dpo", "--model", str(base), "--device", "cpu", "--lora-r", "4", "--epochs", "1", "--quiet"]
    assert main([*flags, "--from-feedback", str(folder), "--out", str(tmp_path / "few")]) == 2
    assert "gives 1 preference pair(s); DPO needs at least 2" in capsys.readouterr().err
    assert not (tmp_path / "few").exists()

    FeedbackStore(folder).add(Feedback("choice", [{"role": "user", "content": PAIRS[1][0]}], PAIRS[1][2],
                                       other=PAIRS[1][1], chosen=2, model=str(base)))
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    out = tmp_path / "unserved"
    unreachable = f"http://127.0.0.1:{port}"
    assert main([*flags, "--from-feedback", str(folder), "--out", str(out), "--serve-to", unreachable]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot reach" in err and f"the adapter stays in {out}" in err
    assert (out / "adapter_model.safetensors").is_file() and (out / "finetune.json").is_file()
    assert main([*flags, "--data", "x.jsonl", "--from-feedback", str(folder), "--out", str(tmp_path / "both")]) == 2
    assert "not both" in capsys.readouterr().err
