"""``fromzero serve --rag IDX``: chat completions asked with the retrieved chunks in front, and their sources listed.

A tiny random GPT (character tokenizer, so one token per character) serves, and the index is built
with that same GPT's mean-pooled encoder (``gpt:DIR``). What the model was asked is read from the
scheduler the app exposes (a spy that calls through), checked against ``usage.prompt_tokens``, and
against a seeded sample: the answer to the question with --rag is the answer to the augmented text
sent as it is without retrieval.
"""

from __future__ import annotations

import json
import string

import pytest

openai = pytest.importorskip("openai", reason="the API tests need the openai client (pip install openai)")
pytest.importorskip("uvicorn", reason="the API tests need the serve extra (pip install 'fromzero[serve]')")

from starlette.testclient import TestClient  # noqa: E402

from fromzero.cli import main  # noqa: E402
from fromzero.data.loading import DOCUMENT_SEPARATOR  # noqa: E402
from fromzero.embeddings.index import Retriever, build_index  # noqa: E402
from fromzero.embeddings.rag import rag_question  # noqa: E402
from fromzero.tokenizers import load_tokenizer  # noqa: E402

FACTS = [("What is ice?", "Ice is frozen water."), ("Who makes honey?", "Bees make honey.")]
# every document holds HTML, so whichever is retrieved, the page must show it as text
DOCS = ["<b>Bees</b> make honey.", "Ice is <img src=x onerror=pwned=1> cold.", "<i>Rain</i> falls."]
QUESTION = "honey?"
K = 2
CONTEXT = 96  # make_qa_models' block size


@pytest.fixture(scope="module")
def setup(make_qa_models, tmp_path_factory):
    """``(base folder, adapter folder, index folder)``; the index was built with the base GPT as its encoder."""
    base, tuned = make_qa_models("serve-rag", FACTS, alphabet=string.printable)
    root = tmp_path_factory.mktemp("serve-rag")
    (root / "docs.txt").write_text(DOCUMENT_SEPARATOR.join(DOCS), encoding="utf-8")
    build_index([str(root / "docs.txt")], root / "idx", f"gpt:{base}", chunk_size=20, overlap=0, quiet=True)
    return base, tuned, root / "idx"


@pytest.fixture(scope="module")
def app(setup):
    from fromzero.serve.app import create_app

    base, tuned, index = setup
    return create_app(str(base), adapters=[("tuned", str(tuned))], rag=index, rag_k=K)


@pytest.fixture(scope="module")
def http(app):
    with TestClient(app) as client:
        yield client


@pytest.fixture
def asked(app, monkeypatch) -> list[str]:
    """The prompts the model is given, as text, in the order the requests reach the scheduler."""
    scheduler, prompts = app.state.scheduler, []
    real = scheduler.submit

    def spy(ids, config, adapter=None, tokenizer=None, loop=None):
        prompts.append(tokenizer.decode(ids))
        return real(ids, config, adapter=adapter, tokenizer=tokenizer, loop=loop)

    monkeypatch.setattr(scheduler, "submit", spy)
    return prompts


def chat(http, question: str = QUESTION, model: str = "base", **fields) -> dict:
    response = http.post("/v1/chat/completions", json={
        "model": model, "messages": [{"role": "user", "content": question}], "max_tokens": 4, **fields})
    assert response.status_code == 200, response.text
    return response.json() if not fields.get("stream") else events(response.text)


def events(text: str) -> list[dict]:
    data = [line[6:] for line in text.splitlines() if line.startswith("data: ")]
    assert data[-1] == "[DONE]"
    return [json.loads(item) for item in data[:-1]]


def expected_sources(index, question: str, used: int) -> list[dict]:
    """The ``used`` best chunks ``Retriever.retrieve`` gives for ``question``, as the response lists them."""
    hits = Retriever(index, K).retrieve(question)[:used]
    return [{"rank": rank, "source": hit.chunk.source, "document": hit.chunk.document, "start": hit.chunk.start,
             "end": hit.chunk.end, "score": pytest.approx(hit.score, abs=1e-5), "text": hit.chunk.text}
            for rank, hit in enumerate(hits, start=1)]


def test_the_model_is_asked_with_the_retrieved_chunks_and_the_sources_say_which(setup, http, asked):
    base, tuned, index = setup
    reply = chat(http, temperature=0)
    [prompt] = asked
    hits = Retriever(index, K).retrieve(QUESTION)
    # plain continuation: the prompt is the question itself; the chunks get what 4 answer tokens leave
    expected, used = rag_question(QUESTION, hits, load_tokenizer(base), CONTEXT - 4 - len(QUESTION))
    assert prompt == expected and prompt.startswith("Based on this textbook content:\n")
    assert hits[0].chunk.text in prompt and prompt.endswith(f"Answer: {QUESTION}")
    assert reply["usage"]["prompt_tokens"] == len(prompt) <= CONTEXT - 4  # one token a character
    assert reply["sources"] == expected_sources(index, QUESTION, len(used))

    # the answer is the one the augmented text gets when it is sent as it is, without retrieval
    sampled = dict(temperature=1.0, seed=5, max_tokens=4)
    with_rag = chat(http, **sampled)
    as_text = chat(http, expected, rag=False, **sampled)
    assert as_text["sources"] is None and as_text["usage"] == with_rag["usage"]
    assert as_text["choices"][0]["message"] == with_rag["choices"][0]["message"]
    assert asked[1:] == [expected, expected]


def test_a_tuned_model_gets_the_context_inside_its_template(http, asked):
    reply = chat(http, model="tuned", temperature=0, max_tokens=3)
    [prompt] = asked
    question = prompt.removeprefix("### Question:\n").removesuffix("\n\n### Answer:\n")  # the qa template
    assert question.startswith("Based on this textbook content:\n") and question.endswith(f"\n\nAnswer: {QUESTION}")
    assert reply["usage"]["prompt_tokens"] == len(prompt) <= CONTEXT - 3 and reply["sources"][0]["rank"] == 1


def test_a_stream_sends_the_same_sources_in_its_first_chunk(http):
    whole = chat(http, temperature=0)
    chunks = chat(http, temperature=0, stream=True)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant" and chunks[0]["sources"] == whole["sources"]
    assert all("sources" not in chunk for chunk in chunks[1:])
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == whole["choices"][0]["message"]["content"]

    two = chat(http, temperature=1.0, seed=1, n=2, stream=True)  # n answers, one prompt: the sources come once
    assert [c["sources"] for c in two if "sources" in c] == [whole["sources"]]


def test_what_is_not_retrieved_is_left_as_it_is(http, asked):
    """Completions, ``rag: false`` and an empty question go to the model unchanged, with no sources."""
    completion = http.post("/v1/completions", json={"model": "base", "prompt": QUESTION, "max_tokens": 3}).json()
    assert "sources" not in completion and completion["usage"]["prompt_tokens"] == len(QUESTION)
    assert chat(http, rag=False)["sources"] is None
    assert chat(http, " ")["sources"] is None
    # a question that leaves the chunks no room is answered without them: retrieval ran, nothing fit
    crowded = chat(http, max_tokens=CONTEXT - len(QUESTION) - 2)
    assert crowded["sources"] == []
    assert asked == [QUESTION, QUESTION, " ", QUESTION]


def test_the_openai_client_reads_the_sources(http):
    client = openai.OpenAI(base_url="http://testserver/v1", api_key="none", http_client=http, max_retries=0)
    question = dict(model="base", messages=[{"role": "user", "content": QUESTION}], max_tokens=4, temperature=0)
    raw = chat(http, temperature=0)
    reply = client.chat.completions.create(**question)
    assert reply.choices[0].message.content == raw["choices"][0]["message"]["content"]
    assert reply.usage.prompt_tokens == raw["usage"]["prompt_tokens"] and reply.model_extra["sources"] == raw["sources"]
    chunks = list(client.chat.completions.create(stream=True, **question))
    assert chunks[0].model_extra["sources"] == raw["sources"]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == reply.choices[0].message.content
    plain = client.chat.completions.create(extra_body={"rag": False}, **question)
    assert plain.model_extra["sources"] is None and plain.usage.prompt_tokens == len(QUESTION)


def test_the_command_serves_with_the_index(setup, monkeypatch, capsys):
    import uvicorn

    from fromzero.commands import serve

    base, tuned, index = setup
    served = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **settings: served.append(app))  # the app, not a port
    monkeypatch.setattr(serve, "_log_to_stderr", lambda: None)  # it would rewire logging for the whole session
    assert main(["serve", "--model", str(base), "--rag", str(index), "--rag-k", "1", "--device", "cpu"]) == 0
    assert f"answer from {index} (3 chunks, 1 per question)" in " ".join(capsys.readouterr().err.split())
    with TestClient(served[0]) as http:
        assert len(chat(http)["sources"]) == 1


def test_a_bad_index_fails_at_start_in_one_line(setup, tmp_path, capsys):
    """A missing index, a --rag-k below 1, an index whose encoder now gives vectors of another size."""
    from fromzero.models import GPT, GPTConfig

    base, tuned, index = setup
    encoder = tmp_path / "encoder"
    tokenizer = load_tokenizer(base)
    GPT(GPTConfig.preset("tiny", vocab_size=tokenizer.vocab_size, block_size=CONTEXT)).save_pretrained(encoder)
    tokenizer.save(encoder)
    build_index([str(index.parent / "docs.txt")], tmp_path / "idx", f"gpt:{encoder}", chunk_size=20, overlap=0,
                quiet=True)
    # the encoder is made again, smaller, after the index was built: the index no longer matches it
    GPT(GPTConfig.preset("tiny", vocab_size=tokenizer.vocab_size, block_size=CONTEXT, n_embd=32)).save_pretrained(encoder)
    cases = [(["--rag", str(tmp_path / "none")], "no index in"), (["--rag", str(index), "--rag-k", "0"], "--rag-k"),
             (["--rag", str(tmp_path / "idx")], "gives vectors of 32 numbers, the index holds 64")]
    for flags, message in cases:
        assert main(["serve", "--model", str(base), *flags, "--device", "cpu"]) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.browser
def test_the_chat_page_shows_the_sources_under_the_answer_as_text(setup):
    """In headless Chromium (skipped, with the reason, where it is missing), like tests/test_serve_web.py."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="the browser tests need playwright")
    web = pytest.importorskip("test_serve_web")  # skips, saying why, where there is no Chromium
    import httpx
    from test_serve_api import running

    from fromzero.serve.app import create_app

    base, tuned, index = setup
    app = create_app(str(base), rag=index, rag_k=3)  # its own: the server's shutdown closes the scheduler
    with running(app) as url, sync_api.sync_playwright() as playwright:
        body = {"model": "base", "messages": [{"role": "user", "content": "Rain?"}], "max_tokens": 4, "temperature": 0}
        sources = httpx.post(url + "/v1/chat/completions", json=body, timeout=30).json()["sources"]
        browser = playwright.chromium.launch(executable_path=web.CHROMIUM, args=web.CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(url + "/")
            page.wait_for_selector("#model option[value='base']", state="attached")
            page.fill("#max-tokens", "4")
            [card] = web.ask(page, "Rain?")
            items = card.locator(".sources li").all()
            assert len(items) == len(sources) >= 1 and card.locator(".sources h2").text_content() == "Sources"
            for item, source in zip(items, sources):
                assert item.locator(".where").text_content() == (
                    f"{source['source']}, document {source['document']}, characters {source['start']}-{source['end']} "
                    f"(similarity {source['score']:.2f})")
                assert item.locator(".chunk").text_content() == source["text"] and "<" in source["text"]
            assert page.locator("#messages img, #messages b, #messages i").count() == 0
            assert page.evaluate("window.pwned") is None and not errors, errors
        finally:
            browser.close()
