"""``fromzero serve``'s OpenAI-compatible API, through the real ``openai`` client and a real uvicorn server.

The server runs in a thread on 127.0.0.1 (a port the OS picks) with a tiny random GPT (character
tokenizer) and a LoRA adapter tuned on it for one epoch with the qa template. Its answers are
checked against ``fromzero generate`` on the same model and prompt (the reference: same tokens),
against themselves (seeds, batching), and against the rules of OpenAI's API (shapes, errors). A
bounded schemathesis run fuzzes every route of ``/openapi.json`` and must never see a 5xx.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

openai = pytest.importorskip("openai", reason="the API tests need the openai client (pip install openai)")
uvicorn = pytest.importorskip("uvicorn", reason="the API tests need the serve extra (pip install 'fromzero[serve]')")


from fromzero.cli import main  # noqa: E402
from fromzero.models import GPT  # noqa: E402

API_KEY = "test-key"
FACTS = [("What colour is the sky?", "The sky is blue."), ("What do cats say?", "Cats say meow."),
         ("What do dogs say?", "Dogs say woof."), ("Where do fish live?", "Fish live in water.")]
QUESTIONS = [q for q, _ in FACTS]


@pytest.fixture(scope="module")
def models(make_qa_models) -> tuple[Path, Path]:
    """``(base folder, adapter folder)``: a random tiny GPT and a LoRA adapter tuned on it with the qa template."""
    return make_qa_models("api", FACTS)


@contextlib.contextmanager
def running(app):
    """Serve ``app`` with uvicorn in a thread on a free port of 127.0.0.1; yield its base URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=20)
        sock.close()


@pytest.fixture(scope="module")
def app(models):
    from fromzero.serve.app import create_app

    base, adapter = models
    return create_app(str(base), adapters=[("tuned", str(adapter))], api_key=API_KEY)


@pytest.fixture(scope="module")
def url(app):
    with running(app) as base_url:
        yield base_url


@pytest.fixture(scope="module")
def client(url):
    return openai.OpenAI(base_url=url + "/v1", api_key=API_KEY, max_retries=0)


def raw(url: str, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
    """``(status, headers, body)`` of one plain HTTP request (no OpenAI client in between); a JSON body parsed."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        headers, content = dict(response.getheaders()), response.read()
        is_json = headers.get("content-type", "").startswith("application/json")
        return response.status, headers, json.loads(content) if is_json else content.decode()
    finally:
        connection.close()


def generate_cli(capsys, *args: str) -> str:
    """The text ``fromzero generate`` prints (its final newline removed)."""
    capsys.readouterr()
    assert main(["generate", *args]) == 0
    return capsys.readouterr().out[:-1]


def ask(client, question: str, model: str = "tuned", **settings):
    return client.chat.completions.create(model=model, messages=[{"role": "user", "content": question}], **settings)


# ---- answers -----------------------------------------------------------------------------------

def test_models_are_listed_with_what_the_page_needs_and_health_needs_no_key(client, url):
    listed = client.models.list().data
    assert [m.id for m in listed] == ["base", "tuned"]
    assert [m.model_extra["fromzero"] for m in listed] == [{"kind": "base", "template": "none", "context": 96},
                                                            {"kind": "adapter", "template": "qa", "context": 96}]
    assert client.models.retrieve("tuned").id == "tuned"
    assert raw(url, "GET", "/health")[::2] == (200, {"status": "ok", "models": ["base", "tuned"]})
    status, headers, _ = raw(url, "GET", "/")
    assert status == 200 and headers["content-type"].startswith("text/html")


def test_greedy_chat_answers_equal_fromzero_generate(client, models, capsys):
    """The tuned model asked in its qa template, the base model continuing text: same tokens as the CLI."""
    from fromzero.chat.conversation import conversation_prompt
    from fromzero.finetune.instructions import Message
    from fromzero.finetune.tuned import load_tuned

    base, adapter = models
    tuned = load_tuned(str(adapter))
    answers = []
    for question in QUESTIONS:
        reply = ask(client, question, temperature=0, max_tokens=30)
        expected = generate_cli(capsys, "--model", str(adapter), "--prompt", question, "--greedy",
                                "--max-new-tokens", "30")
        [choice] = reply.choices
        assert choice.message.role == "assistant" and choice.message.content == expected
        usage = reply.usage
        assert usage.prompt_tokens == len(conversation_prompt(tuned, [Message("user", question)], 30).ids)
        assert 1 <= usage.completion_tokens <= 30 and usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
        assert choice.finish_reason == ("length" if usage.completion_tokens == 30 else "stop")
        answers.append(expected)
    assert any(answers), "the adapter answers nothing at all: the comparison would be empty"

    text = client.completions.create(model="base", prompt="The sky is", temperature=0, max_tokens=40)
    assert "The sky is" + text.choices[0].text == generate_cli(
        capsys, "--model", str(base), "--prompt", "The sky is", "--greedy", "--max-new-tokens", "40")
    assert text.choices[0].finish_reason == "length" and text.usage.completion_tokens == 40


def test_batched_requests_get_the_answers_they_get_alone(client, url):
    """Greedy and seeded answers do not depend on what else shares the batch, adapters mixed."""
    requests = [dict(model=model, messages=[{"role": "user", "content": q}], max_tokens=25, **sampling)
                for model in ("base", "tuned") for q in QUESTIONS[:2]
                for sampling in ({"temperature": 0}, {"temperature": 1.0, "seed": 11})]
    alone = [client.chat.completions.create(**request).choices[0].message.content for request in requests]

    async def together() -> list[str]:
        async_client = openai.AsyncOpenAI(base_url=url + "/v1", api_key=API_KEY, max_retries=0)
        replies = await asyncio.gather(*(async_client.chat.completions.create(**r) for r in requests))
        return [reply.choices[0].message.content for reply in replies]

    assert asyncio.run(together()) == alone


def test_streamed_answers_arrive_in_pieces_and_add_up_to_the_whole(client):
    whole = ask(client, "The sky is", model="base", temperature=0, max_tokens=30)
    stream = ask(client, "The sky is", model="base", temperature=0, max_tokens=30, stream=True,
                 stream_options={"include_usage": True})
    chunks = list(stream)
    pieces = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert chunks[0].choices[0].delta.role == "assistant"
    assert len(pieces) >= 10 and "".join(pieces) == whole.choices[0].message.content
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["length"]
    assert chunks[-1].choices == [] and chunks[-1].usage == whole.usage
    assert all(c.id == chunks[0].id and c.object == "chat.completion.chunk" for c in chunks)

    whole = client.completions.create(model="tuned", prompt="Cats", temperature=0, max_tokens=20)
    pieces = [c.choices[0].text for c in client.completions.create(model="tuned", prompt="Cats", temperature=0,
                                                                 max_tokens=20, stream=True)]
    assert len(pieces) >= 10 and "".join(pieces) == whole.choices[0].text


def test_n_answers_and_seeds_repeat_exactly(client):
    settings = dict(model="base", prompt="Fish", max_tokens=20, temperature=1.0, top_p=0.95)
    first = client.completions.create(n=2, seed=7, **settings)
    assert [c.index for c in first.choices] == [0, 1]
    texts = [c.text for c in first.choices]
    assert texts[0] != texts[1] and all(len(t) == 20 for t in texts)
    assert [c.text for c in client.completions.create(n=2, seed=7, **settings).choices] == texts
    # answer i is sampled with seed + i (the documented rule)
    assert client.completions.create(n=1, seed=8, **settings).choices[0].text == texts[1]
    assert first.usage.prompt_tokens == 4 and first.usage.completion_tokens == 40  # the prompt counts once

    chat = dict(model="base", messages=[{"role": "user", "content": "Cats"}], max_tokens=15, seed=3, n=2)
    whole = [c.message.content for c in client.chat.completions.create(**chat).choices]
    streamed = ["", ""]
    for chunk in client.chat.completions.create(stream=True, **chat):
        for choice in chunk.choices:
            streamed[choice.index] += choice.delta.content or ""
    assert streamed == whole and whole[0] != whole[1]


def test_stop_strings_end_the_answer_before_them(client):
    full = client.completions.create(model="base", prompt="Dogs", temperature=0, max_tokens=40).choices[0].text
    stop = full[15:17]
    cut = full[:full.find(stop)]
    for given in (stop, [stop, "never-written"]):
        reply = client.completions.create(model="base", prompt="Dogs", temperature=0, max_tokens=40, stop=given)
        assert reply.choices[0].text == cut and reply.choices[0].finish_reason == "stop"
    pieces = [c.choices[0].text for c in client.completions.create(
        model="base", prompt="Dogs", temperature=0, max_tokens=40, stop=stop, stream=True)]
    assert "".join(pieces) == cut
    chat = ask(client, "Dogs", model="base", temperature=0, max_tokens=40, stop=stop)
    assert chat.choices[0].message.content == cut


def test_fromzero_knobs_apply_and_unsupported_openai_fields_are_ignored(client):
    greedy = ask(client, "The sky", model="base", temperature=0, max_tokens=20).choices[0].message.content
    # top_k 1 leaves only the most likely token to sample: the greedy answer, whatever the seed
    for seed in (1, 2):
        top1 = ask(client, "The sky", model="base", temperature=1.5, max_tokens=20, seed=seed, extra_body={"top_k": 1})
        assert top1.choices[0].message.content == greedy
    ignored = ask(client, "The sky", model="base", temperature=0, max_tokens=20, frequency_penalty=0.5,
                  presence_penalty=0.1, logit_bias={"1": 5}, user="someone", response_format={"type": "text"},
                  extra_body={"repetition_penalty": 1.0, "some_future_field": [1, 2]})
    assert ignored.choices[0].message.content == greedy
    # max_tokens is capped to what the context (96) leaves after the prompt
    capped = client.completions.create(model="base", prompt="The sky", temperature=0, max_tokens=10_000)
    assert capped.usage.completion_tokens == 96 - capped.usage.prompt_tokens
    assert capped.choices[0].finish_reason == "length"


# ---- errors ------------------------------------------------------------------------------------

def test_errors_have_openai_shape_and_status(client, url):
    for key in ("wrong", API_KEY + "x"):
        with pytest.raises(openai.AuthenticationError) as error:
            openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0).models.list()
        assert error.value.code == "invalid_api_key"
    status, _, body = raw(url, "GET", "/v1/models")  # no key at all
    assert status == 401 and "API key" in body["error"]["message"]

    with pytest.raises(openai.NotFoundError) as error:
        ask(client, "hi", model="gpt-4")
    assert error.value.param == "model" and "base, tuned" in error.value.message

    bad = [({"temperature": 5}, "temperature"), ({"n": 0}, "n"), ({"top_p": 1.5}, "top_p"),
           ({"max_tokens": 0}, "max_tokens"), ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
           ({"extra_body": {"top_k": -1}}, "top_k"), ({"seed": 2**70}, "seed")]
    for settings, param in bad:
        with pytest.raises(openai.BadRequestError) as error:
            ask(client, "hi", **settings)
        assert error.value.param == param, error.value.body
    with pytest.raises(openai.BadRequestError) as error:
        client.chat.completions.create(model="base", messages=[{"role": "robot", "content": "hi"}])
    assert error.value.param == "messages[0].role"
    with pytest.raises(openai.BadRequestError) as error:
        client.chat.completions.create(model="base", messages=[{"role": "assistant", "content": "hi"}])
    assert error.value.param == "messages" and "end with a user message" in error.value.message

    # a prompt longer than the context: 400 with the library's one-line message
    with pytest.raises(openai.BadRequestError) as error:
        ask(client, "The sky is blue. " * 12)
    assert error.value.param == "messages" and "tokens" in error.value.message
    with pytest.raises(openai.BadRequestError) as error:
        client.completions.create(model="base", prompt="a" * 200)
    assert error.value.param == "prompt" and "200 tokens" in error.value.message
    with pytest.raises(openai.BadRequestError) as error:  # a character the tokenizer has never seen
        client.completions.create(model="base", prompt="€")
    assert "vocabulary" in error.value.message

    headers = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}
    status, _, body = raw(url, "POST", "/v1/chat/completions", b'{"model": "base",', headers)
    assert status == 400 and "not valid JSON" in body["error"]["message"]
    status, _, body = raw(url, "POST", "/v1/completions", b" " * (1 << 20) + b"{}", headers)
    assert status == 413 and body["error"]["code"] == "body_too_large"
    assert raw(url, "GET", "/v1/nothing-here", headers=headers)[0] == 404
    status, _, body = raw(url, "DELETE", "/v1/models", headers=headers)
    assert status == 405 and set(body["error"]) == {"message", "type", "param", "code"}


@pytest.fixture
def busy_url(models):
    """A server that decodes one answer at a time, queues none, and takes 40 ms per forward pass."""
    from fromzero.serve.app import create_app

    forward = GPT.forward

    def slow_forward(self, *args, **kwargs):
        time.sleep(0.04)
        return forward(self, *args, **kwargs)

    app = create_app(str(models[0]), max_batch=1, max_queue=0)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(GPT, "forward", slow_forward)
        with running(app) as base_url:
            yield base_url, app.state.scheduler


def test_a_full_queue_is_429_and_a_client_that_hangs_up_frees_its_place(busy_url):
    url, scheduler = busy_url
    client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
    start = time.monotonic()
    stream = client.completions.create(model="base", prompt="The", max_tokens=90, temperature=0, stream=True)
    first = next(iter(stream))  # 90 tokens at 40 ms each: this answer would run for 3.6 s
    assert first.choices[0].text
    with pytest.raises(openai.RateLimitError) as error:
        client.completions.create(model="base", prompt="The", max_tokens=5)
    assert error.value.code == "queue_full" and error.value.response.headers["retry-after"] == "1"

    stream.close()  # the client hangs up mid-answer: its job is cancelled and leaves the batch
    while scheduler.running or scheduler.waiting:
        assert time.monotonic() - start < 3, "the job of a disconnected client kept running"
        time.sleep(0.01)
    assert client.completions.create(model="base", prompt="The", max_tokens=3).choices[0].text


# ---- the rest ----------------------------------------------------------------------------------

def test_each_request_is_one_json_access_log_line(client, caplog):
    with caplog.at_level(logging.INFO, logger="fromzero.serve.access"):
        reply = ask(client, "Cats", model="base", max_tokens=7, seed=1)
        deadline = time.monotonic() + 5
        while not caplog.records and time.monotonic() < deadline:
            time.sleep(0.01)
    line = json.loads(caplog.records[-1].getMessage())
    assert {k: line[k] for k in ("method", "path", "status", "model", "prompt_tokens", "completion_tokens")} == {
        "method": "POST", "path": "/v1/chat/completions", "status": 200, "model": "base",
        "prompt_tokens": reply.usage.prompt_tokens, "completion_tokens": 7}
    assert line["finish"] == ["length"] and line["ms"] > 0 and line["client"] == "127.0.0.1"


def test_fuzzing_the_openapi_schema_finds_no_server_error(models):
    """schemathesis generates valid and invalid requests for every route; none may get a 5xx."""
    schemathesis = pytest.importorskip("schemathesis")
    from hypothesis import HealthCheck, given, settings
    from hypothesis.errors import Unsatisfiable
    from schemathesis.checks import not_a_server_error

    from fromzero.serve.app import create_app

    app = create_app(str(models[0]), adapters=[("tuned", str(models[1]))])
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.label for op in operations} >= {"GET /v1/models", "POST /v1/chat/completions", "POST /v1/completions"}
    statuses: list[int] = []
    for operation in operations:
        for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):
            @given(case=operation.as_strategy(generation_mode=mode))
            # derandomized: the same requests every run, so a finding is reproducible, not a flaky CI
            @settings(max_examples=25, deadline=None, database=None, derandomize=True,
                      suppress_health_check=list(HealthCheck))
            def fuzz(case):
                if isinstance(case.body, dict) and "model" in case.body and len(statuses) % 2:
                    case.body["model"] = "tuned" if len(statuses) % 4 == 1 else "base"  # reach the model too
                response = case.call()
                statuses.append(response.status_code)
                case.validate_response(response, checks=[not_a_server_error])

            try:
                fuzz()
            except Unsatisfiable:  # every request is valid for a route without inputs, or with one free string
                assert mode is schemathesis.GenerationMode.NEGATIVE and operation.method.upper() in ("GET", "DELETE")
    app.state.scheduler.close()  # from_asgi runs no lifespan, whose end would close it
    assert 200 in statuses and 400 in statuses and 404 in statuses
    assert max(statuses) < 500


def test_help_imports_neither_torch_nor_fastapi():
    code = ("import sys\nfrom fromzero.cli import main\ntry:\n    main(['serve', '--help'])\nexcept SystemExit:\n"
            "    pass\nprint(sorted(m for m in ('torch', 'fastapi', 'uvicorn') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip().endswith("[]"), result.stdout + result.stderr
    assert "--max-batch" in result.stdout and "FROMZERO_API_KEY" in result.stdout


def test_command_mistakes_are_one_line_errors(models, capsys):
    assert main(["serve", "--model", str(models[0]), "--adapter", f"base={models[1]}"]) == 2
    assert "'base' is the base model's id" in capsys.readouterr().err
    assert main(["serve", "--model", str(models[0]), "--max-batch", "0"]) == 2
    assert "--max-batch" in capsys.readouterr().err


def test_the_command_serves_and_shuts_down_gracefully(models):
    """``fromzero serve`` for real: the key from the environment, an answer under way when Ctrl-C comes
    still finishes, then the process exits 0; the access log goes to stderr."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "FROMZERO_API_KEY": "env-key"}
    process = subprocess.Popen([sys.executable, "-m", "fromzero", "serve", "--model", str(models[0]), "--adapter",
                                f"tuned={models[1]}", "--port", str(port), "--device", "cpu"],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None and time.monotonic() < deadline, process.communicate()[1]
            with contextlib.suppress(OSError):
                if raw(url, "GET", "/health")[0] == 200:
                    break
            time.sleep(0.1)
        client = openai.OpenAI(base_url=url + "/v1", api_key="env-key", max_retries=0)
        stream = client.chat.completions.create(model="tuned", messages=[{"role": "user", "content": "Cats"}],
                                                max_tokens=40, temperature=0, stream=True)
        chunks = iter(stream)
        first = next(chunks)
        process.send_signal(signal.SIGINT)
        rest = list(chunks)  # the answer goes on to its end
        assert first.choices[0].delta.role == "assistant" and rest[-1].choices[0].finish_reason in ("stop", "length")
        assert process.wait(timeout=30) == 0
        err = process.stderr.read()
        assert "serving base, tuned" in err
        [line] = [json.loads(line) for line in err.splitlines() if line.startswith('{"method": "POST"')]
        assert line["status"] == 200 and line["model"] == "tuned"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
