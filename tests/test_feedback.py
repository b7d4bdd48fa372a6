"""Feedback on answers as training data: the store, its exports, the API, the REPL commands, a crash.

The exports are checked the way they are used: read back by ``fromzero finetune``'s own loaders
(:func:`load_instructions`, :func:`load_preferences`) and trained on for real. The API runs
through FastAPI's TestClient on a tiny random GPT with a LoRA adapter (qa template), the REPL
through piped stdin, and the crash test kills a real ``fromzero serve`` process with SIGKILL while
ratings are being written.
"""

from __future__ import annotations

import contextlib
import http.client
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import serve_process
from fromzero.chat.feedback import FEEDBACK_FILE, Feedback, FeedbackStore, dpo_records, export, sft_records
from fromzero.cli import main
from fromzero.errors import InputError
from fromzero.finetune.instructions import Example, Message, PreferencePair, load_instructions, load_preferences

FACTS = [("What colour is the sky?", "The sky is blue."), ("What do cats say?", "Cats say meow."),
         ("What do dogs say?", "Dogs say woof."), ("Where do fish live?", "Fish live in water.")]
API_KEY = "test-key"


def asked(question: str, *earlier: tuple[str, str], system: str | None = None) -> list[dict]:
    """The messages an answer to ``question`` replies to, after the ``earlier`` (question, answer) turns."""
    messages = [{"role": "system", "content": system}] if system else []
    for q, a in earlier:
        messages += [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
    return messages + [{"role": "user", "content": question}]


def rating(question: str, answer: str, verdict: str, **details) -> Feedback:
    return Feedback("rating", asked(question), answer, rating=verdict, template="qa", model="m", **details)


# ---- the store ---------------------------------------------------------------------------------

def test_records_are_appended_one_line_each_and_read_back(tmp_path):
    store = FeedbackStore(tmp_path / "fb")
    first = store.add(rating("What do cats say?", "Meow.", "up", settings={"temperature": 0.7}))
    second = store.add(Feedback("edit", asked("Why?"), "Because.", better="Because the sun\nshines.", model="m"))
    assert store.path == tmp_path / "fb" / FEEDBACK_FILE
    lines = store.path.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["id"] for line in lines] == [first.id, second.id]
    assert first.id != second.id and first.time.endswith("Z")
    assert store.records() == [first, second]
    assert FeedbackStore(tmp_path / "empty").records() == []


def test_a_torn_last_line_is_skipped_with_a_warning_and_the_next_record_starts_a_fresh_line(tmp_path, capsys):
    store = FeedbackStore(tmp_path)
    kept = store.add(rating("What do cats say?", "Meow.", "up"))
    line = json.dumps({"kind": "rating", "messages": asked("Q"), "answer": "A", "rating": "down"}).encode()
    with open(store.path, "ab") as file:
        file.write(line[: len(line) // 2])  # a crash in the middle of a write
    assert store.records() == [kept]
    assert "skipped 1 unreadable line(s)" in capsys.readouterr().err
    after = store.add(rating("What do dogs say?", "Woof.", "down"))
    assert store.records() == [kept, after]  # the torn line stays behind, on a line of its own
    assert "skipped 1 unreadable line(s)" in capsys.readouterr().err
    assert len(store.path.read_text(encoding="utf-8").splitlines()) == 3


def test_appends_from_many_threads_never_interleave(tmp_path):
    store = FeedbackStore(tmp_path)
    long_answer = "word " * 2000  # 10 kB lines: more than a pipe's atomic write, still one write each

    def rate(thread: int) -> None:
        for i in range(20):
            FeedbackStore(tmp_path).add(rating(f"question {thread} {i}", long_answer, "up"))

    threads = [threading.Thread(target=rate, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    lines = store.path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 120 and all(json.loads(line)["answer"] == long_answer for line in lines)
    assert len({r.question for r in store.records()}) == 120


def test_each_append_is_fsynced_before_it_returns(tmp_path, monkeypatch):
    import fromzero.chat.feedback as feedback

    synced: list[int] = []
    real = os.fsync
    monkeypatch.setattr(feedback.os, "fsync", lambda fd: (synced.append(os.fstat(fd).st_size), real(fd))[1])
    store = FeedbackStore(tmp_path / "new")
    store.add(rating("Q", "A", "up"))
    size = store.path.stat().st_size
    assert synced[0] == size  # the file, with the whole line in it; then the new file's folder
    assert len(synced) == 2
    store.add(rating("Q", "B", "down"))
    assert len(synced) == 3 and synced[2] == store.path.stat().st_size  # the folder only once


@pytest.mark.parametrize("record, message", [
    (Feedback("like", asked("Q"), "A"), "unknown feedback kind 'like'"),
    (Feedback("rating", asked("Q"), "A", rating="meh"), "'up' or 'down'"),
    (Feedback("rating", [], "A", rating="up"), "non-empty list"),
    (Feedback("rating", asked("Q") + [{"role": "assistant", "content": "A"}], "A", rating="up"), "must end with"),
    (Feedback("rating", [{"role": "user", "content": "Q"}, {"role": "system", "content": "S"},
                         {"role": "user", "content": "Q"}], "A", rating="up"), "only the first message"),
    (Feedback("rating", [{"role": "robot", "content": "Q"}], "A", rating="up"), "has the role 'robot'"),
    (Feedback("rating", [{"role": "user"}], "A", rating="up"), "needs a role and a text content"),
    (Feedback("edit", asked("Q"), "A", better="  "), "needs the better answer"),
    (Feedback("edit", asked("Q"), "A", better=" A "), "the same as the original"),
    (Feedback("choice", asked("Q"), "A", chosen=1), "needs the second answer"),
    (Feedback("choice", asked("Q"), "A", other="B", chosen=3), "as 1 or 2"),
])
def test_bad_records_are_refused_in_one_line_and_nothing_is_written(tmp_path, record, message):
    store = FeedbackStore(tmp_path)
    with pytest.raises(InputError, match=message):
        store.add(record)
    assert not store.path.exists()


def test_an_unwritable_folder_is_a_one_line_error(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="cannot store the feedback in"):
        FeedbackStore(tmp_path / "file" / "fb").add(rating("Q", "A", "up"))


# ---- exports -----------------------------------------------------------------------------------

def sample_store(tmp_path: Path) -> FeedbackStore:
    store = FeedbackStore(tmp_path / "fb")
    chat_turns = asked("And dogs?", ("What do cats say?", "Meow."), system="Be brief.")
    for record in [
        rating("What do cats say?", "Cats say meow.", "up"),
        rating("What do cats say?", "Cats say meow.", "up"),  # the same rating twice: one example
        rating("What do cats say?", "Cats bark.", "down"),
        rating("Where do fish live?", "In trees.", "up"),
        rating("Where do fish live?", "In trees.", "down"),  # a changed mind: the last rating counts
        Feedback("edit", asked("Where do fish live?"), "In trees.", better="Fish live in water.", template="qa"),
        Feedback("choice", asked("What do dogs say?"), "Dogs say meow.", other="Dogs say woof.", chosen=2),
        Feedback("choice", asked("What colour is the sky?"), "Blue.", other="Blue.", chosen=1),  # prefers nothing
        Feedback("rating", chat_turns, "Woof.", rating="up", template="chat"),
        rating("What is empty?", "", "up"),  # load_instructions refuses an empty answer
    ]:
        store.add(record)
    return store


def test_sft_export_is_what_load_instructions_reads(tmp_path):
    store = sample_store(tmp_path)
    result = export(store, "sft", tmp_path / "sft.jsonl")
    assert result.left_out == 1
    examples = load_instructions(tmp_path / "sft.jsonl")
    assert examples == [
        Example((Message("user", "What do cats say?"), Message("assistant", "Cats say meow."))),
        Example((Message("system", "Be brief."), Message("user", "What do cats say?"), Message("assistant", "Meow."),
                 Message("user", "And dogs?"), Message("assistant", "Woof."))),  # the chat template's whole turn
        Example((Message("user", "Where do fish live?"), Message("assistant", "Fish live in water."))),
    ]
    lines = (tmp_path / "sft.jsonl").read_text(encoding="utf-8").splitlines()
    assert json.loads(lines[0]) == {"instruction": "What do cats say?", "output": "Cats say meow."}

    export(store, "sft", tmp_path / "sft.json")  # a .json name: a JSON list, which the loader reads too
    assert isinstance(json.loads((tmp_path / "sft.json").read_text(encoding="utf-8")), list)
    assert load_instructions(tmp_path / "sft.json") == examples


def test_dpo_export_is_what_load_preferences_reads(tmp_path):
    store = sample_store(tmp_path)
    result = export(store, "dpo", tmp_path / "dpo.jsonl")
    assert result.left_out == 1  # the choice between two equal answers
    assert load_preferences(tmp_path / "dpo.jsonl") == [
        PreferencePair("Where do fish live?", "Fish live in water.", "In trees."),  # the edit
        PreferencePair("What do dogs say?", "Dogs say woof.", "Dogs say meow."),  # the choice, 2 won
        PreferencePair("What do cats say?", "Cats say meow.", "Cats bark."),  # up vs down, same question
    ]  # the fish's edit also beats its down-rating: the same pair, written once


def test_the_pair_builders_keep_order_and_drop_duplicates():
    records = [rating("Q", "good", "up"), rating("Q", "bad", "down"), rating("Q", "bad", "down"),
               rating("Other question", "bad", "down")]
    assert dpo_records(records).records == [{"prompt": "Q", "chosen": "good", "rejected": "bad"}]
    assert sft_records(records).records == [{"instruction": "Q", "output": "good"}]
    assert sft_records([rating("Q", "good", "up"), rating("Q", "good", "down")]).records == []


def test_nothing_to_export_is_an_error_and_writes_nothing(tmp_path):
    store = FeedbackStore(tmp_path / "fb")
    with pytest.raises(InputError, match="no feedback in"):
        export(store, "sft", tmp_path / "out.jsonl")
    store.add(rating("Q", "A", "down"))
    with pytest.raises(InputError, match="nothing to export as sft"):
        export(store, "sft", tmp_path / "out.jsonl")
    with pytest.raises(InputError, match="unknown export format"):
        export(store, "kto", tmp_path / "out.jsonl")
    assert not (tmp_path / "out.jsonl").exists()


def test_the_feedback_command_lists_and_exports_and_finetune_trains_on_the_exports(tmp_path, capsys, qa_models):
    base, _ = qa_models
    store = sample_store(tmp_path)
    assert main(["feedback", "list", "--dir", str(store.folder), "--last", "3"]) == 0
    out = capsys.readouterr().out
    assert "10 record(s)" in out and "latest" in out and "Be brief" not in out and "And dogs?" in out
    assert main(["feedback", "export", "--format", "sft", "--dir", str(store.folder), "--out",
                 str(tmp_path / "sft.jsonl")]) == 0
    err = capsys.readouterr().err
    assert "wrote 3 instruction examples" in err and "1 left out" in err
    assert main(["feedback", "export", "--format", "dpo", "--dir", str(store.folder), "--out",
                 str(tmp_path / "dpo.jsonl")]) == 0
    assert main(["feedback", "export", "--format", "sft", "--dir", str(tmp_path / "none"), "--out",
                 str(tmp_path / "x.jsonl")]) == 2
    assert "error: there is no feedback in" in capsys.readouterr().err
    assert main(["feedback", "list", "--dir", str(tmp_path / "none")]) == 0
    assert "no feedback in" in capsys.readouterr().err

    # a store in the words the tiny model's character tokenizer knows, trained on as exported
    trained = FeedbackStore(tmp_path / "trained")
    for record in [rating("What do cats say?", "Cats say meow.", "up"), rating("What do cats say?", "Cats say woof.",
                                                                               "down"),
                   Feedback("edit", asked("Where do fish live?"), "Fish live in sky.", better="Fish live in water."),
                   Feedback("choice", asked("What do dogs say?"), "Dogs say meow.", other="Dogs say woof.", chosen=2)]:
        trained.add(record)
    for method in ("sft", "dpo"):
        data = tmp_path / f"{method}-data.jsonl"
        assert main(["feedback", "export", "--format", method, "--dir", str(trained.folder), "--out", str(data)]) == 0
        assert main(["finetune", method, "--model", str(base), "--data", str(data), "--epochs", "1", "--batch-size",
                     "2", "--val-fraction", "0.5", "--device", "cpu", "--lora-r", "4", "--warmup-steps", "0",
                     "--out", str(tmp_path / method)]) == 0, capsys.readouterr().err
        assert (tmp_path / method / "adapter_config.json").is_file()


def test_feedback_help_imports_no_torch():
    code = ("import sys\nfrom fromzero.cli import main\ntry:\n    main(['feedback', 'export', '--help'])\n"
            "except SystemExit:\n    pass\nprint(sorted(m for m in ('torch', 'numpy', 'fastapi') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip().endswith("[]"), result.stdout + result.stderr
    assert "--format" in result.stdout


# ---- the API -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def qa_models(make_qa_models) -> tuple[Path, Path]:
    return make_qa_models("feedback", FACTS)


@pytest.fixture(scope="module")
def api(qa_models, tmp_path_factory):
    """``(TestClient, feedback folder, app)`` of a server with the adapter ``tuned`` and an API key."""
    from starlette.testclient import TestClient

    from fromzero.serve.app import create_app

    folder = tmp_path_factory.mktemp("served-feedback")
    app = create_app(str(qa_models[0]), adapters=[("tuned", str(qa_models[1]))], api_key=API_KEY,
                     feedback_dir=folder)
    with TestClient(app, headers={"Authorization": f"Bearer {API_KEY}"}) as client:
        yield client, folder, app


def file_records(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / FEEDBACK_FILE).read_text(encoding="utf-8").splitlines()]


def test_a_rating_is_on_disk_when_it_is_acknowledged(api, qa_models, monkeypatch):
    import fromzero.chat.feedback as feedback
    from fromzero.chat.conversation import conversation_prompt

    client, folder, app = api
    synced: list[int] = []
    real = os.fsync
    monkeypatch.setattr(feedback.os, "fsync", lambda fd: (synced.append(fd), real(fd))[1])
    body = {"kind": "rating", "rating": "up", "model": "tuned", "messages": [{"role": "user", "content": "Cats?"}],
            "answer": "Cats say meow.", "settings": {"temperature": 0.5, "max_tokens": 30, "seed": 3}}
    response = client.post("/v1/feedback", json=body)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["stored"] is True and synced
    [record] = [r for r in file_records(folder) if r["id"] == answer["id"]]  # read right after the answer
    tuned = app.state.served["tuned"].tuned
    expected = tuned.tokenizer.decode(conversation_prompt(tuned, [Message("user", "Cats?")], 30).ids)
    assert record["prompt"] == expected and "Question" in expected  # the qa template, as the model read it
    assert {k: record[k] for k in ("kind", "rating", "answer", "template", "adapter", "settings", "origin")} == {
        "kind": "rating", "rating": "up", "answer": "Cats say meow.", "template": "qa", "adapter": "tuned",
        "settings": body["settings"], "origin": "serve"}
    assert record["model"] == str(qa_models[0])  # what the server was started with


def test_edits_and_choices_are_stored_and_listed_newest_first(api):
    client, folder, _ = api
    messages = [{"role": "developer", "content": "Be brief."}, {"role": "user", "content": "Dogs?"}]
    edit = client.post("/v1/feedback", json={"kind": "edit", "model": "base", "messages": messages,
                                             "answer": "Dogs say meow.", "better": "Dogs say woof."}).json()
    choice = client.post("/v1/feedback", json={"kind": "choice", "model": "base", "other_model": "tuned",
                                               "messages": messages, "answer": "A", "other": "B", "chosen": 2}).json()
    listed = client.get("/v1/feedback", params={"limit": 2}).json()
    assert [r["id"] for r in listed["data"]] == [choice["id"], edit["id"]]
    first, second = listed["data"][1], listed["data"][0]
    assert first["messages"][0] == {"role": "system", "content": "Be brief."}  # developer is read as system
    assert first["adapter"] is None and first["template"] == "none" and first["better"] == "Dogs say woof."
    assert (second["adapter"], second["other_adapter"], second["chosen"]) == (None, "tuned", 2)


@pytest.mark.parametrize("body, status, message", [
    ({"kind": "rating", "model": "tuned", "messages": [{"role": "user", "content": "Q"}], "answer": "A"}, 400,
     "a rating is 'up' or 'down'"),
    ({"kind": "rating", "rating": "up", "model": "nope", "messages": [{"role": "user", "content": "Q"}],
      "answer": "A"}, 404, "the model 'nope' does not exist"),
    ({"kind": "rating", "rating": "up", "model": "tuned", "messages": [{"role": "assistant", "content": "Q"}],
      "answer": "A"}, 400, "must end with the user's question"),
    ({"kind": "rating", "rating": "sideways", "model": "tuned", "messages": [{"role": "user", "content": "Q"}],
      "answer": "A"}, 400, "invalid rating"),
    ({"kind": "edit", "model": "tuned", "messages": [{"role": "user", "content": "Q"}], "answer": "A",
      "better": "A"}, 400, "the same as the original"),
    ({"kind": "choice", "model": "tuned", "messages": [], "answer": "A"}, 400, "invalid messages"),
    ({"kind": "rating", "rating": "up", "model": "tuned", "messages": [{"role": "user", "content": "a" * 500}],
      "answer": "A"}, 400, "more than the"),
])
def test_bad_feedback_gets_an_openai_error_and_stores_nothing(api, body, status, message):
    client, folder, _ = api
    before = (folder / FEEDBACK_FILE).read_bytes() if (folder / FEEDBACK_FILE).exists() else b""
    response = client.post("/v1/feedback", json=body)
    assert response.status_code == status and message in response.json()["error"]["message"], response.text
    after = (folder / FEEDBACK_FILE).read_bytes() if (folder / FEEDBACK_FILE).exists() else b""
    assert after == before


def test_feedback_needs_the_api_key(api):
    client, _, _ = api
    body = {"kind": "rating", "rating": "up", "model": "tuned", "messages": [{"role": "user", "content": "Q"}],
            "answer": "A"}
    for headers in ({"Authorization": ""}, {"Authorization": "Bearer wrong"}):
        assert client.post("/v1/feedback", json=body, headers=headers).status_code == 401
        assert client.get("/v1/feedback", headers=headers).status_code == 401


def test_continue_final_message_goes_on_with_the_answer(api):
    client, _, _ = api
    question = [{"role": "user", "content": "The sky is"}]
    settings = {"model": "base", "temperature": 0, "max_tokens": 24}
    whole = client.post("/v1/chat/completions", json={**settings, "messages": question}).json()
    text = whole["choices"][0]["message"]["content"]
    assert len(text) > 10
    start = text[:6]
    rest = client.post("/v1/chat/completions", json={
        **settings, "max_tokens": 24 - len(start), "continue_final_message": True,
        "messages": question + [{"role": "assistant", "content": start}]}).json()
    assert start + rest["choices"][0]["message"]["content"] == text  # one character per token: the same greedy path
    refused = client.post("/v1/chat/completions", json={**settings, "messages": question,
                                                         "continue_final_message": True})
    assert refused.status_code == 400 and "must end with it" in refused.json()["error"]["message"]


# ---- the REPL ----------------------------------------------------------------------------------

def chat(monkeypatch, capsys, args: list, stdin: str) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    status = main(["chat", *map(str, args)])
    out, err = capsys.readouterr()
    return status, out, err


def test_repl_good_bad_edit_and_better_are_stored(qa_models, tmp_path, monkeypatch, capsys):
    from fromzero.chat.conversation import conversation_prompt
    from fromzero.finetune.tuned import load_tuned

    base, adapter = qa_models
    folder = tmp_path / "fb"
    script = ["good", "What do cats say?", "good", "bad", "edit", "Cats say meow.", "They purr too.", "",
              "Where do fish live?", "good", "compare", "better 3", "better 2", "help"]
    status, out, err = chat(monkeypatch, capsys, ["--model", base, "--adapter", f"tuned={adapter}", "--temperature",
                                                  1.5, "--seed", 0, "--max-new-tokens", 20, "--feedback-dir", folder],
                            "\n".join(script) + "\n")
    assert status == 0 and "Traceback" not in err
    assert "good is about the last answer, and there is none yet" in err
    assert "usage: better 1|2" in err
    for word in ("good", "bad", "edit", "better 1|2"):
        assert word in out  # help lists them
    records = FeedbackStore(folder).records()
    assert [(r.kind, r.rating) for r in records] == [("rating", "up"), ("rating", "down"), ("edit", None),
                                                     ("rating", "up"), ("choice", None)]
    up, down, edit, second, choice = records
    answer = up.answer
    assert out.startswith(answer + "\n") and len(answer) > 3
    tuned = load_tuned(str(base), [("tuned", str(adapter))])
    prompt = tuned.tokenizer.decode(conversation_prompt(tuned, [Message("user", "What do cats say?")], 20).ids)
    assert (up.answer, up.prompt, up.template, up.adapter, up.origin) == (answer, prompt, "qa", "tuned", "chat")
    assert up.messages == [{"role": "user", "content": "What do cats say?"}] and up.model == str(base)
    assert up.settings == {"temperature": 1.5, "top_k": 50, "top_p": "off", "tokens": 20, "seed": 0}
    assert down.answer == answer and edit.answer == answer and edit.better == "Cats say meow.\nThey purr too."
    # the conversation goes on with the edited answer
    assert second.messages == [{"role": "user", "content": "What do cats say?"},
                               {"role": "assistant", "content": "Cats say meow.\nThey purr too."},
                               {"role": "user", "content": "Where do fish live?"}]
    assert (choice.chosen, choice.adapter, choice.other_adapter) == (2, None, "tuned")
    assert choice.messages == [{"role": "user", "content": "Where do fish live?"}] and choice.winner == choice.other


# ---- crash safety ------------------------------------------------------------------------------

def request(port: int, method: str, path: str, body: dict | None = None, timeout: float = 10):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request(method, path, body=json.dumps(body) if body is not None else None,
                           headers={"Content-Type": "application/json", "Authorization": f"Bearer {API_KEY}"})
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


@contextlib.contextmanager
def serving(qa_models, folder: Path):
    """``fromzero serve`` as a process on a free port of 127.0.0.1; yields ``(process, port)``."""
    with serve_process(["--model", str(qa_models[0]), "--adapter", f"tuned={qa_models[1]}", "--device", "cpu",
                        "--feedback-dir", str(folder)], {"FROMZERO_API_KEY": API_KEY}) as running:
        yield running


def test_every_acknowledged_rating_survives_a_sigkill(qa_models, tmp_path):
    folder = tmp_path / "fb"
    acknowledged: list[str] = []
    failures: list[dict] = []
    stop = threading.Event()

    def stream_answers() -> None:  # answers are being written when the kill comes, too
        for _ in range(500):
            if stop.is_set():
                return
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            try:
                connection.request("POST", "/v1/chat/completions", headers={
                    "Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}, body=json.dumps(
                    {"model": "tuned", "messages": [{"role": "user", "content": "Cats"}], "stream": True}))
                connection.getresponse().read()
            except (OSError, http.client.HTTPException):
                return
            finally:
                connection.close()

    def rate(worker: int) -> None:
        for i in range(2000):  # bounded; the kill ends it long before
            if stop.is_set():
                return
            body = {"kind": "rating", "rating": "up" if i % 2 else "down", "model": "tuned",
                    "answer": f"answer {worker}-{i}", "messages": [{"role": "user", "content": FACTS[i % 4][0]}]}
            try:
                status, answer = request(port, "POST", "/v1/feedback", body, timeout=5)
            except (OSError, http.client.HTTPException, json.JSONDecodeError):
                return  # the server is gone
            if status != 200 or answer.get("stored") is not True:
                failures.append(answer)
                return
            acknowledged.append(answer["id"])

    with serving(qa_models, folder) as (process, port):
        workers = [threading.Thread(target=rate, args=(n,)) for n in range(3)] + [threading.Thread(target=stream_answers)]
        for worker in workers:
            worker.start()
        deadline = time.monotonic() + 10
        while len(acknowledged) < 40 and time.monotonic() < deadline:
            time.sleep(0.01)
        process.send_signal(signal.SIGKILL)  # mid-write, mid-stream: no shutdown of any kind
        process.wait(timeout=10)
        stop.set()
        for worker in workers:
            worker.join(timeout=10)
    assert not failures and len(acknowledged) >= 40
    lines = (folder / FEEDBACK_FILE).read_text(encoding="utf-8").splitlines()
    stored = [json.loads(line)["id"] for line in lines]  # every line parses
    assert set(acknowledged) <= set(stored) and len(set(stored)) == len(stored)

    with serving(qa_models, folder) as (_, port):
        status, listed = request(port, "GET", "/v1/feedback?limit=1000")
        assert status == 200 and set(acknowledged) <= {record["id"] for record in listed["data"]}
        status, answer = request(port, "POST", "/v1/feedback", {"kind": "rating", "rating": "up", "model": "base",
                                 "answer": "A", "messages": [{"role": "user", "content": "after"}]})
        assert status == 200
    assert [json.loads(line)["id"] for line in (folder / FEEDBACK_FILE).read_text().splitlines()] == stored + [answer["id"]]
