"""The details of OpenAI's API that real clients rely on, through the ``openai`` client against a real server.

``stream_options.include_usage``, log-probabilities (checked against the model itself: ``log_softmax``
of its raw logits, recomputed here with one forward pass over prompt and answer), ``n``/``seed``/
``stop``/``max_completion_tokens``, ``response_format`` json_object (every answer parses, with a
character tokenizer and with GPT-2's), and ``/v1/embeddings`` (checked against sentence-transformers
for MiniLM and against the library's GPT encoder). The models are tiny and random: what is checked is
the server's bookkeeping, which does not depend on the model being any good.
"""

from __future__ import annotations

import asyncio
import base64
import json
import string
from pathlib import Path

import pytest

openai = pytest.importorskip("openai", reason="the API tests need the openai client (pip install openai)")
pytest.importorskip("uvicorn", reason="the API tests need the serve extra (pip install 'fromzero[serve]')")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from starlette.testclient import TestClient  # noqa: E402
from test_serve_api import raw, running  # noqa: E402

from fromzero.chat.conversation import conversation_prompt  # noqa: E402
from fromzero.cli import main  # noqa: E402
from fromzero.finetune.instructions import Message  # noqa: E402
from fromzero.finetune.lora import using_adapter  # noqa: E402
from fromzero.generation.json_constraint import JSONObjectConstraint, JSONVocabulary, State, advance  # noqa: E402
from fromzero.models import GPT, GPTConfig  # noqa: E402
from fromzero.tokenizers import BPETokenizer, CharTokenizer  # noqa: E402

KEY = "details-key"
FACTS = [("What colour is the sky?", "The sky is blue."), ("What do cats say?", "Cats say meow.")]
QUESTION = "What do cats say?"


@pytest.fixture(scope="module")
def models(make_qa_models) -> tuple[Path, Path]:
    """A random tiny GPT whose characters include all of JSON's, and a LoRA adapter (qa template) tuned on it."""
    return make_qa_models("details", FACTS, alphabet=string.printable)


@pytest.fixture(scope="module")
def app(models):
    from fromzero.serve.app import create_app

    base, tuned = models
    return create_app(str(base), adapters=[("tuned", str(tuned))], api_key=KEY, embeddings="minilm")


@pytest.fixture(scope="module")
def url(app):
    with running(app) as base_url:
        yield base_url


@pytest.fixture(scope="module")
def client(url):
    return openai.OpenAI(base_url=url + "/v1", api_key=KEY, max_retries=0)


def chat(client, model: str = "base", question: str = QUESTION, **settings):
    return client.chat.completions.create(model=model, messages=[{"role": "user", "content": question}], **settings)


def events(url: str, path: str, body: dict) -> list[dict]:
    """The JSON events of one stream, read as sent (no client in between), before ``[DONE]``."""
    status, _, text = raw(url, "POST", path, json.dumps(body).encode(),
                          {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"})
    assert status == 200, text
    lines = [line[6:] for line in text.splitlines() if line.startswith("data: ")]
    assert lines[-1] == "[DONE]"
    return [json.loads(line) for line in lines[:-1]]


def model_logprobs(app, model_id: str, ids: list[int]) -> torch.Tensor:
    """(len(ids), V): ``log_softmax`` of the raw logits the served model gives after each prefix of ``ids``."""
    served = app.state.served[model_id]
    model = served.tuned.model
    with torch.inference_mode(), using_adapter(model, served.adapter):
        return model(torch.tensor([ids])).logits[0].float().log_softmax(dim=-1)


def assert_same_logprobs(got, expected) -> None:
    """The same tokens with the same log-probabilities, up to float rounding (a batch, a reused prefix)."""
    assert len(got) == len(expected)
    for a, b in zip(got, expected):
        assert (a.token, a.bytes) == (b.token, b.bytes)
        assert [t.token for t in a.top_logprobs] == [t.token for t in b.top_logprobs]
        assert [a.logprob, *(t.logprob for t in a.top_logprobs)] == pytest.approx(
            [b.logprob, *(t.logprob for t in b.top_logprobs)], abs=1e-4)


# ---- stream_options ----------------------------------------------------------------------------

def test_include_usage_ends_the_stream_with_the_counts_of_the_same_request(client, url):
    settings = dict(max_tokens=12, temperature=1.0, seed=5, n=2)
    whole = chat(client, **settings)
    chunks = list(chat(client, stream=True, stream_options={"include_usage": True}, **settings))
    assert chunks[-1].choices == [] and chunks[-1].usage == whole.usage
    assert whole.usage.completion_tokens == 24 and all(c.usage is None for c in chunks[:-1])
    texts = ["", ""]
    for chunk in chunks[:-1]:
        texts[chunk.choices[0].index] += chunk.choices[0].delta.content or ""
    assert texts == [c.message.content for c in whole.choices]

    completion = client.completions.create(model="tuned", prompt="Cats", **settings)
    streamed = list(client.completions.create(model="tuned", prompt="Cats", stream=True,
                                              stream_options={"include_usage": True}, **settings))
    assert streamed[-1].choices == [] and streamed[-1].usage == completion.usage

    # as sent: with include_usage every other chunk has "usage": null; without it no chunk has the key
    body = {"model": "base", "messages": [{"role": "user", "content": "Cats"}], "max_tokens": 5, "stream": True}
    with_usage = events(url, "/v1/chat/completions", {**body, "stream_options": {"include_usage": True}})
    assert all(e["usage"] is None for e in with_usage[:-1]) and with_usage[-1]["usage"]["completion_tokens"] == 5
    assert all("usage" not in e for e in events(url, "/v1/chat/completions", body))
    plain = events(url, "/v1/completions", {"model": "base", "prompt": "Cats", "max_tokens": 5, "stream": True,
                                            "stream_options": {"include_usage": False}})
    assert all("usage" not in e for e in plain)

    with pytest.raises(openai.BadRequestError) as error:
        chat(client, max_tokens=3, stream_options={"include_usage": True})
    assert error.value.param == "stream_options" and "stream: true" in error.value.message


# ---- log-probabilities -------------------------------------------------------------------------

@pytest.mark.parametrize("model", ["base", "tuned"])
def test_chat_logprobs_are_log_softmax_of_the_models_raw_logits(app, client, model):
    settings = dict(max_tokens=10, temperature=0.5, seed=3, logprobs=True, top_logprobs=3, extra_body={"top_k": 4})
    reply = chat(client, model, **settings)
    [choice] = reply.choices
    content = choice.logprobs.content
    tokenizer = app.state.served[model].tuned.tokenizer
    assert len(content) == reply.usage.completion_tokens == 10 and choice.finish_reason == "length"
    assert "".join(entry.token for entry in content) == choice.message.content
    prompt = conversation_prompt(app.state.served[model].tuned, [Message("user", QUESTION)], 10).ids
    assert len(prompt) == reply.usage.prompt_tokens
    answer = [tokenizer.encode(entry.token)[0] for entry in content]
    expected = model_logprobs(app, model, prompt + answer)[len(prompt) - 1:-1]  # the scores each token was picked from
    processed_differs = False
    for step, (entry, token) in enumerate(zip(content, answer)):
        assert entry.bytes == list(entry.token.encode()) and len(entry.top_logprobs) == 3
        assert entry.logprob == pytest.approx(float(expected[step, token]), abs=1e-4)
        values, ids = expected[step].topk(3)
        assert [tokenizer.encode(top.token)[0] for top in entry.top_logprobs] == ids.tolist()
        assert [top.logprob for top in entry.top_logprobs] == pytest.approx(values.tolist(), abs=1e-4)
        # what the sampler drew from (temperature 0.5 over the 4 best) gives other numbers: these are the model's
        logits = model_logprobs(app, model, prompt + answer[:step])[-1]
        kept = logits.masked_fill(logits < logits.topk(4).values[-1], -float("inf"))
        processed_differs |= abs(float((kept / 0.5).log_softmax(-1)[token]) - entry.logprob) > 1e-3
    assert processed_differs

    streamed = []  # a stream sends each token's entry with the text it completes
    for chunk in chat(client, model, stream=True, **settings):
        if chunk.choices and chunk.choices[0].logprobs:
            assert chunk.choices[0].delta.content == "".join(e.token for e in chunk.choices[0].logprobs.content)
            streamed += chunk.choices[0].logprobs.content
    assert_same_logprobs(streamed, content)

    plain = chat(client, model, max_tokens=4, logprobs=True)  # no top_logprobs: an empty list per token
    assert [entry.top_logprobs for entry in plain.choices[0].logprobs.content] == [[]] * 4
    assert chat(client, model, max_tokens=4).choices[0].logprobs is None
    with pytest.raises(openai.BadRequestError) as error:
        chat(client, model, max_tokens=4, top_logprobs=2)
    assert error.value.param == "top_logprobs"
    with pytest.raises(openai.BadRequestError) as error:
        chat(client, model, max_tokens=4, logprobs=True, top_logprobs=21)
    assert error.value.param == "top_logprobs"


def test_completion_logprobs_have_openai_s_older_shape(app, client):
    prompt = "The sky"
    reply = client.completions.create(model="base", prompt=prompt, max_tokens=8, temperature=0, logprobs=2)
    [choice] = reply.choices
    logprobs = choice.logprobs
    assert "".join(logprobs.tokens) == choice.text and len(logprobs.tokens) == 8
    assert logprobs.text_offset == [sum(len(t) for t in logprobs.tokens[:i]) for i in range(8)]
    tokenizer = app.state.served["base"].tuned.tokenizer
    prompt_ids, answer = tokenizer.encode(prompt), tokenizer.encode(choice.text)
    expected = model_logprobs(app, "base", prompt_ids + answer)[len(prompt_ids) - 1:-1]
    assert logprobs.token_logprobs == pytest.approx(expected.gather(1, torch.tensor(answer)[:, None])[:, 0].tolist(),
                                                    abs=1e-4)
    for step, (token, top) in enumerate(zip(logprobs.tokens, logprobs.top_logprobs)):
        values, ids = expected[step].topk(2)
        best = {tokenizer.decode([i]): v for i, v in zip(ids.tolist(), values.tolist())}
        assert token in best  # greedy: the chosen token is the most likely, so the dict has the 2 best only
        assert top == pytest.approx(best, abs=1e-4)

    streamed = client.completions.create(model="base", prompt=prompt, max_tokens=8, temperature=0, logprobs=2,
                                         stream=True)
    parts = [c.choices[0].logprobs for c in streamed if c.choices[0].logprobs]
    assert sum((p.tokens for p in parts), []) == logprobs.tokens
    assert sum((p.text_offset for p in parts), []) == logprobs.text_offset  # offsets run on across chunks
    assert sum((p.token_logprobs for p in parts), []) == pytest.approx(logprobs.token_logprobs, abs=1e-4)

    sampled = client.completions.create(model="base", prompt=prompt, max_tokens=6, seed=1, logprobs=1)
    for token, top in zip(sampled.choices[0].logprobs.tokens, sampled.choices[0].logprobs.top_logprobs):
        assert token in top and len(top) in (1, 2)  # the best, and the chosen token when it is another
    zero = client.completions.create(model="base", prompt=prompt, max_tokens=3, logprobs=0).choices[0].logprobs
    assert zero.top_logprobs is None and len(zero.token_logprobs) == 3
    with pytest.raises(openai.BadRequestError) as error:
        client.completions.create(model="base", prompt=prompt, max_tokens=3, logprobs=6)
    assert error.value.param == "logprobs"


def test_logprobs_in_a_batch_equal_those_of_a_request_alone(client, url):
    requests = [dict(model=model, messages=[{"role": "user", "content": q}], max_tokens=12, logprobs=True,
                     top_logprobs=2, **sampling)
                for model in ("base", "tuned") for q in ("Cats", "The sky")
                for sampling in ({"temperature": 0}, {"temperature": 1.0, "seed": 4})]
    requests.append(dict(requests[0], logprobs=False, top_logprobs=None))  # a row that asks for none, beside them
    alone = [client.chat.completions.create(**r).choices[0] for r in requests]

    async def together():
        async_client = openai.AsyncOpenAI(base_url=url + "/v1", api_key=KEY, max_retries=0)
        return [r.choices[0] for r in await asyncio.gather(*(async_client.chat.completions.create(**r)
                                                              for r in requests))]

    for single, batched in zip(alone, asyncio.run(together())):
        assert batched.message.content == single.message.content
        if single.logprobs is None:
            assert batched.logprobs is None
            continue
        assert_same_logprobs(batched.logprobs.content, single.logprobs.content)


# ---- n, seed, stop, max_tokens -----------------------------------------------------------------

def test_n_seed_stop_and_max_completion_tokens(client):
    both = chat(client, max_tokens=20, max_completion_tokens=7, temperature=0)
    assert both.usage.completion_tokens == 7 and both.choices[0].finish_reason == "length"  # the newer name wins
    assert chat(client, max_completion_tokens=5, temperature=0).usage.completion_tokens == 5
    assert chat(client, max_tokens=6, temperature=0).usage.completion_tokens == 6

    answers = chat(client, max_tokens=10, n=3, seed=21).choices
    assert [c.index for c in answers] == [0, 1, 2] and len({c.message.content for c in answers}) == 3
    assert [c.message.content for c in chat(client, max_tokens=10, n=3, seed=21).choices] == \
        [c.message.content for c in answers]
    assert chat(client, max_tokens=10, seed=23).choices[0].message.content == answers[2].message.content

    full = chat(client, max_tokens=30, temperature=0).choices[0].message.content
    stop = full[10:12]
    cut = full[:full.find(stop)]
    for given in (stop, ["never-written", stop]):
        reply = chat(client, max_tokens=30, temperature=0, stop=given).choices[0]
        assert reply.message.content == cut and reply.finish_reason == "stop"


# ---- response_format ---------------------------------------------------------------------------

@pytest.mark.parametrize("model", ["base", "tuned"])
def test_json_object_answers_always_parse_as_objects(client, url, model):
    replies = [chat(client, model, max_tokens=40, n=4, seed=seed, response_format={"type": "json_object"})
               for seed in (1, 11)]
    replies.append(chat(client, model, max_tokens=40, temperature=0, response_format={"type": "json_object"}))
    choices = [choice for reply in replies for choice in reply.choices]
    for choice in choices:
        assert isinstance(json.loads(choice.message.content), dict), choice.message.content
        assert choice.finish_reason == "stop"
    assert len({c.message.content for c in choices}) > 3 and any(len(c.message.content) > 2 for c in choices)

    streamed = "".join(c.choices[0].delta.content or "" for c in chat(
        client, model, max_tokens=25, seed=3, stream=True, response_format={"type": "json_object"}))
    assert isinstance(json.loads(streamed), dict)
    short = [chat(client, model, max_tokens=tokens, seed=4, response_format={"type": "json_object"}).choices[0]
             for tokens in (1, 2, 3)]
    assert (short[0].message.content, short[0].finish_reason) == ("{", "length")  # too short even for {}
    assert (short[1].message.content, short[1].finish_reason) == ("{}", "stop")  # 2 tokens: {} is all that fits
    assert isinstance(json.loads(short[2].message.content), dict) and short[2].finish_reason == "stop"

    with pytest.raises(openai.BadRequestError) as error:
        chat(client, model, max_tokens=5, response_format={"type": "json_schema", "json_schema": {"name": "x"}})
    assert "json_object" in error.value.message and error.value.param == "response_format.type"


def test_the_json_automaton_agrees_with_json_loads():
    texts = ['{}', '{"a":1}', '{"a":[1,2,{"b":null}],"c":"x\\u00e9\\n","d":-0.5e+3}', '{ "é" : true } ',
             '{"a":01}', '{"a":1,}', '{"a"}', '[1]', '{"a":tru}', '{"a":"\x01"}', '{"a":1.}', '{"a":-}',
             ' {}', '{"a":[1,]}', '{"a":"\\x"}', '{"a":1e}', '{} {}', '{"a":0.5E-2,"b":[]}']
    for text in texts:
        state = State("start")
        for byte in text.encode():
            if (state := advance(state, byte)) is None:
                break
        try:
            parsed = isinstance(json.loads(text), dict) and not text.startswith(" ")  # the answer opens with {
        except json.JSONDecodeError:
            parsed = False
        assert (state is not None and state.mode == "done") == parsed, text


@pytest.mark.parametrize("kind", ["gpt2", "trained-bpe"])
def test_json_constraint_works_with_byte_level_bpe(kind, gpt2_files):
    """Random scores over a BPE vocabulary (tokens of several characters, some holding half a UTF-8
    character): every answer closes within the budget and parses."""
    if kind == "gpt2":
        tokenizer = BPETokenizer.from_files(gpt2_files["encoder.json"], gpt2_files["vocab.bpe"])
    else:
        tokenizer = BPETokenizer.train('{"name": "Ada", "tags": ["x", "y"], "n": -1.5e3} naïve café ' * 20, 400)
    vocabulary = JSONVocabulary(tokenizer, tokenizer.vocab_size + 7)  # a model's vocabulary may be padded
    for seed in range(4):
        generator = torch.Generator().manual_seed(seed)
        constraint, ids = JSONObjectConstraint(vocabulary, 30), []
        for _ in range(30):
            scores = constraint.mask(torch.randn(1, vocabulary.size, generator=generator) * 4)
            assert torch.isinf(scores[0, tokenizer.vocab_size:]).all()  # padding ids are never allowed
            token = int(torch.multinomial(scores.softmax(-1), 1, generator=generator))
            ids.append(token)
            if constraint.push(token):
                break
        assert isinstance(json.loads(tokenizer.decode(ids)), dict), tokenizer.decode(ids)


def tiny_model(folder: Path, tokenizer) -> Path:
    torch.manual_seed(0)
    GPT(GPTConfig.preset("tiny", vocab_size=tokenizer.vocab_size, block_size=64)).save_pretrained(folder)
    tokenizer.save(folder)
    return folder


def test_json_object_with_gpt2_s_tokenizer_and_a_tokenizer_that_cannot(tmp_path, gpt2_files):
    from fromzero.serve.app import create_app

    gpt2 = BPETokenizer.from_files(gpt2_files["encoder.json"], gpt2_files["vocab.bpe"])
    with TestClient(create_app(str(tiny_model(tmp_path / "gpt2", gpt2)))) as http:
        for seed in (1, 2):
            reply = http.post("/v1/chat/completions", json={
                "model": "base", "messages": [{"role": "user", "content": "Hello"}], "max_tokens": 25, "n": 2,
                "seed": seed, "response_format": {"type": "json_object"}}).json()
            for choice in reply["choices"]:
                assert isinstance(json.loads(choice["message"]["content"]), dict) and choice["finish_reason"] == "stop"
        # no embeddings model here: /v1/embeddings is a 404 in OpenAI's shape that says how to get one
        response = http.post("/v1/embeddings", json={"model": "minilm", "input": "hi"})
        assert response.status_code == 404 and "--embeddings" in response.json()["error"]["message"]

    letters = CharTokenizer.train("abcdef \n")  # no braces: no JSON object can be written
    with TestClient(create_app(str(tiny_model(tmp_path / "letters", letters)))) as http:
        response = http.post("/v1/chat/completions", json={
            "model": "base", "messages": [{"role": "user", "content": "ab"}], "max_tokens": 5,
            "response_format": {"type": "json_object"}})
        assert response.status_code == 400 and response.json()["error"]["param"] == "response_format"
        assert "'{' or '}'" in response.json()["error"]["message"]


# ---- embeddings --------------------------------------------------------------------------------

TEXTS = ["A cat sits on the mat.", "Photosynthesis turns light into sugar.", "word " * 400]


def test_embeddings_equal_sentence_transformers_vectors(client, url):
    sentence_transformers = pytest.importorskip("sentence_transformers")
    from fromzero.embeddings.encoders import minilm_folder

    reference = sentence_transformers.SentenceTransformer(str(minilm_folder()), device="cpu")
    expected = reference.encode(TEXTS)
    tokens = reference.tokenize(TEXTS)["attention_mask"].sum(dim=1).tolist()
    assert tokens[2] == reference.max_seq_length  # the long text is cut, as sentence-transformers cuts it

    reply = client.embeddings.create(model="minilm", input=TEXTS)  # the client asks for base64 and decodes it
    assert [d.index for d in reply.data] == [0, 1, 2] and reply.model == "minilm"
    np.testing.assert_allclose(np.array([d.embedding for d in reply.data]), expected, atol=1e-5)
    assert reply.usage.prompt_tokens == reply.usage.total_tokens == sum(tokens)
    floats = client.embeddings.create(model="minilm", input=TEXTS[0], encoding_format="float", dimensions=384)
    np.testing.assert_allclose(floats.data[0].embedding, expected[0], atol=1e-5)
    assert floats.usage.prompt_tokens == tokens[0]

    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    status, _, body = raw(url, "POST", "/v1/embeddings", json.dumps(
        {"model": "minilm", "input": TEXTS[:2], "encoding_format": "base64"}).encode(), headers)
    assert status == 200 and body["object"] == "list" and body["data"][0]["object"] == "embedding"
    decoded = np.stack([np.frombuffer(base64.b64decode(d["embedding"]), dtype="<f4") for d in body["data"]])
    np.testing.assert_allclose(decoded, expected[:2], atol=1e-5)

    listed = {m.id: m.model_extra["fromzero"] for m in client.models.list().data}
    assert listed["minilm"] == {"kind": "embeddings", "dimensions": 384, "context": reference.max_seq_length}
    assert client.models.retrieve("minilm").id == "minilm"
    for mistake, param in [(dict(dimensions=100), "dimensions"), (dict(model="text-embedding-3-small"), "model"),
                           (dict(input=""), "input"), (dict(input=[]), "input")]:
        with pytest.raises((openai.BadRequestError, openai.NotFoundError)) as error:
            client.embeddings.create(**{"model": "minilm", "input": "hi", **mistake})
        assert error.value.param == param, error.value.body
    with pytest.raises(openai.NotFoundError) as error:
        chat(client, "minilm", max_tokens=2)
    assert "/v1/embeddings" in error.value.message


def test_a_gpt_encoder_gives_the_library_s_vectors(models):
    from fromzero.embeddings.encoders import GPTMeanPoolEncoder
    from fromzero.serve.app import create_app

    base = models[0]
    expected = GPTMeanPoolEncoder.load(str(base)).encode(TEXTS[:2], normalize=True)
    with TestClient(create_app(str(base), embeddings=f"gpt:{base}")) as http:
        assert [m["id"] for m in http.get("/v1/models").json()["data"]] == ["base", "gpt:base"]
        body = http.post("/v1/embeddings", json={"model": "gpt:base", "input": TEXTS[:2]}).json()
    np.testing.assert_allclose(np.array([d["embedding"] for d in body["data"]]), expected, atol=1e-5)
    assert body["usage"]["prompt_tokens"] == sum(len(t) for t in TEXTS[:2])  # one token per character


def test_a_bad_embeddings_model_fails_at_start(models, capsys):
    assert main(["serve", "--model", str(models[0]), "--embeddings", str(models[0] / "no-such-encoder")]) == 2
    assert "no-such-encoder" in capsys.readouterr().err
