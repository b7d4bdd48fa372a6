"""``/v1/adapters``: adapters loaded into and unloaded from a running server, on a tiny random GPT.

The adapters are real ``fromzero finetune sft`` results (``make_qa_models``); a second one is the
first with its B matrices negated, so the two answer differently. Requests run through FastAPI's
TestClient, and through the scheduler directly where a test must know which jobs share a step.
"""

from __future__ import annotations

import json
import shutil
import threading
import time

import pytest
import torch
from fastapi.testclient import TestClient
from safetensors.torch import load_file, save_file

from fromzero.generation.config import GenerationConfig
from fromzero.serve.app import create_app

FACTS = [("What colour is the sky?", "The sky is blue."), ("What do cats say?", "Cats say meow."),
         ("What do dogs say?", "Dogs say woof.")]
KEY = "adapter-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
GREEDY = {"temperature": 0, "max_tokens": 12}


@pytest.fixture(scope="module")
def models(make_qa_models, tmp_path_factory):
    """``(base, tuned, flipped)``: the base folder and two adapter folders on it that answer differently."""
    base, tuned = make_qa_models("adapters", FACTS)
    flipped = tmp_path_factory.mktemp("flipped") / "flipped"
    shutil.copytree(tuned, flipped)
    weights = load_file(flipped / "adapter_model.safetensors")
    save_file({k: -v if ".lora_B." in k else v for k, v in weights.items()}, flipped / "adapter_model.safetensors")
    return base, tuned, flipped


@pytest.fixture
def client(models):
    app = create_app(str(models[0]), api_key=KEY, device="cpu", max_batch=8)
    with TestClient(app) as client:
        yield client


def ids(client) -> list[str]:
    return [m["id"] for m in client.get("/v1/models", headers=AUTH).json()["data"]]


def complete(client, model: str, prompt: str = "What do cats say?") -> tuple[str, list[float]]:
    """The greedy answer and its tokens' log-probabilities: a random tiny model's answers are much alike, the
    log-probabilities tell its adapters apart."""
    response = client.post("/v1/completions", headers=AUTH,
                           json={"model": model, "prompt": prompt, "logprobs": 0, **GREEDY})
    assert response.status_code == 200, response.text
    choice = response.json()["choices"][0]
    return choice["text"], choice["logprobs"]["token_logprobs"]


def same(first: tuple[str, list[float]], second: tuple[str, list[float]]) -> bool:
    """The same text, and log-probabilities equal up to float rounding (packed and plain kernels sum differently)."""
    return first[0] == second[0] and torch.allclose(torch.tensor(first[1]), torch.tensor(second[1]), atol=1e-5)


def test_an_adapter_loads_is_listed_at_once_answers_and_unloads(client, models):
    base_text = complete(client, "base")
    response = client.post("/v1/adapters", headers=AUTH, json={"name": "tuned", "path": str(models[1])})
    assert response.status_code == 200, response.text
    assert response.json()["id"] == "tuned" and response.json()["fromzero"]["kind"] == "adapter"
    assert response.json()["fromzero"]["template"] == "qa"  # from its finetune.json
    assert ids(client) == ["base", "tuned"]
    chat = client.post("/v1/chat/completions", headers=AUTH, json={
        "model": "tuned", "messages": [{"role": "user", "content": "What do cats say?"}], **GREEDY})
    assert chat.status_code == 200 and chat.json()["model"] == "tuned"
    assert not same(complete(client, "tuned"), base_text)  # the adapter changes the answer ...
    assert complete(client, "base") == base_text  # ... and the base stays the base

    gone = client.delete("/v1/adapters/tuned", headers=AUTH)
    assert gone.status_code == 200 and gone.json() == {"id": "tuned", "object": "model", "deleted": True}
    assert ids(client) == ["base"]
    assert client.post("/v1/completions", headers=AUTH, json={"model": "tuned", "prompt": "x"}).status_code == 404
    assert complete(client, "base") == base_text
    assert client.delete("/v1/adapters/tuned", headers=AUTH).status_code == 404
    refused = client.delete("/v1/adapters/base", headers=AUTH)
    assert refused.status_code == 400 and "cannot be unloaded" in refused.json()["error"]["message"]


def test_a_runtime_adapter_answers_as_the_same_adapter_given_at_start(client, models):
    client.post("/v1/adapters", headers=AUTH, json={"name": "tuned", "path": str(models[1])}).raise_for_status()
    at_start = create_app(str(models[0]), [("tuned", str(models[1]))], device="cpu")
    with TestClient(at_start) as started:
        for prompt in ("What do cats say?", "Where is the sky?"):
            assert same(complete(client, "tuned", prompt), complete(started, "tuned", prompt))


def test_replacing_an_adapter_swaps_its_weights_and_forgets_its_cached_prefixes(client, models):
    client.post("/v1/adapters", headers=AUTH, json={"name": "a", "path": str(models[1])}).raise_for_status()
    first = complete(client, "a")
    cache = client.app.state.scheduler.prefix_cache
    assert cache is not None and cache._roots.get("a") is not None  # its prompt's K/V are kept
    client.post("/v1/adapters", headers=AUTH, json={"name": "a", "path": str(models[2])}).raise_for_status()
    assert "a" not in cache._roots
    assert ids(client) == ["base", "a"]
    with TestClient(create_app(str(models[0]), [("a", str(models[2]))], device="cpu")) as fresh:
        assert same(complete(client, "a"), complete(fresh, "a")) and not same(complete(client, "a"), first)


def bad_adapters(models, tmp_path) -> dict[str, tuple]:
    """Folders no server on ``models[0]`` may load: (name, path, words of the error)."""
    tuned = models[1]
    other_base = tmp_path / "other_base"
    shutil.copytree(tuned, other_base)
    record = json.loads((other_base / "finetune.json").read_text())
    (other_base / "finetune.json").write_text(json.dumps({**record, "base_model": "gpt2"}))
    shapes = tmp_path / "shapes"
    shutil.copytree(tuned, shapes)
    config = json.loads((shapes / "adapter_config.json").read_text())
    (shapes / "adapter_config.json").write_text(json.dumps({**config, "r": 8}))
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    (pickled / "adapter_config.json").write_text((tuned / "adapter_config.json").read_text())
    (pickled / "adapter_model.bin").write_bytes(b"\x80\x04 not to be unpickled")
    (tmp_path / "empty").mkdir()
    return {"missing": (tmp_path / "nowhere", "not a folder"), "empty": (tmp_path / "empty", "adapter_config.json"),
            "other base": (other_base, "tuned on gpt2"), "shapes": (shapes, "different base model"),
            "pickle": (pickled, "pickle")}


def test_bad_adapters_are_refused_with_400_and_nothing_changes(client, models, tmp_path):
    client.post("/v1/adapters", headers=AUTH, json={"name": "tuned", "path": str(models[1])}).raise_for_status()
    before = {model: complete(client, model) for model in ("base", "tuned")}
    for case, (path, words) in bad_adapters(models, tmp_path).items():
        for name in ("new", "tuned"):  # a new name, and a replacement of a loaded one
            response = client.post("/v1/adapters", headers=AUTH, json={"name": name, "path": str(path)})
            assert response.status_code == 400, (case, response.text)
            error = response.json()["error"]
            assert error["type"] == "invalid_request_error" and error["param"] == "path"
            assert words in error["message"], (case, error["message"])
    for name in ("base", "", "a.b", "has space"):
        response = client.post("/v1/adapters", headers=AUTH, json={"name": name, "path": str(models[1])})
        assert response.status_code == 400 and response.json()["error"]["param"] == "name"
    assert ids(client) == ["base", "tuned"]
    assert all(same(complete(client, model), answer) for model, answer in before.items())


def test_the_api_key_guards_loading_and_unloading(client, models):
    body = {"name": "tuned", "path": str(models[1])}
    assert client.post("/v1/adapters", json=body).status_code == 401
    wrong = {"Authorization": "Bearer nope"}
    assert client.post("/v1/adapters", headers=wrong, json=body).status_code == 401
    assert client.post("/v1/adapters", headers=AUTH, json=body).status_code == 200
    assert client.delete("/v1/adapters/tuned").status_code == 401
    assert client.delete("/v1/adapters/tuned", headers=AUTH).status_code == 200


def while_held(scheduler, call) -> object:
    """Hold the scheduler's thread between two steps, run ``call`` (an HTTP request) meanwhile in another
    thread, then let the scheduler go on; returns what ``call`` returned. Whatever ``call`` asks of the
    scheduler thus happens with the jobs submitted before exactly where they were."""
    release, result = threading.Event(), {}
    scheduler.run_between_steps(lambda: release.wait(30))
    thread = threading.Thread(target=lambda: result.setdefault("value", call()))
    thread.start()
    time.sleep(0.3)  # the request reaches the scheduler's queue of calls
    release.set()
    thread.join(30)
    return result["value"]


def test_requests_for_two_adapters_share_a_batch_and_get_the_tokens_they_get_alone(client, models):
    for name, folder in (("a", models[1]), ("b", models[2])):
        client.post("/v1/adapters", headers=AUTH, json={"name": name, "path": str(folder)}).raise_for_status()
    scheduler = client.app.state.scheduler
    tokenizer = client.app.state.served["a"].tuned.tokenizer
    prompts = [tokenizer.encode(text) for text in ("What do cats say?", "What colour is the sky?")]
    config = GenerationConfig(max_new_tokens=10)
    requests = [(ids, adapter) for ids in prompts for adapter in ("a", "b", None)]
    alone = [scheduler.submit(ids, config, adapter=adapter, logprobs=0) for ids, adapter in requests]
    alone_tokens = [list(job) for job in alone]
    jobs = while_held(scheduler, lambda: [scheduler.submit(ids, config, adapter=adapter, logprobs=0)
                                          for ids, adapter in requests])
    assert [list(job) for job in jobs] == alone_tokens  # all six joined at one step
    first = [job.token_logprobs[0].logprob for job in alone]
    assert [job.token_logprobs[0].logprob for job in jobs] == pytest.approx(first, abs=1e-5)
    assert min(abs(x - y) for x, y in [(first[0], first[1]), (first[0], first[2]), (first[1], first[2])]) > 1e-4


def test_loading_between_steps_leaves_a_running_request_as_it_would_have_been(client, models):
    scheduler = client.app.state.scheduler
    tokenizer = client.app.state.served["base"].tuned.tokenizer
    config = GenerationConfig(max_new_tokens=60)
    prompt = tokenizer.encode("What do dogs say?")
    alone = list(scheduler.submit(prompt, config))
    job = scheduler.submit(prompt, config)
    first = next(iter(job))  # it is decoding ...
    response = while_held(scheduler, lambda: client.post("/v1/adapters", headers=AUTH,
                                                         json={"name": "tuned", "path": str(models[1])}))
    assert response.status_code == 200  # ... while the adapter loads ...
    assert [first, *job] == alone and job.finish_reason == "length"  # ... and finishes as if nothing happened
    assert ids(client) == ["base", "tuned"]


def test_an_adapter_in_use_is_neither_replaced_nor_unloaded(client, models):
    client.post("/v1/adapters", headers=AUTH, json={"name": "tuned", "path": str(models[1])}).raise_for_status()
    scheduler = client.app.state.scheduler
    tokenizer = client.app.state.served["tuned"].tuned.tokenizer
    job = scheduler.submit(tokenizer.encode("What do cats say?"), GenerationConfig(max_new_tokens=60), adapter="tuned")
    first = next(iter(job))
    for call in (lambda: client.delete("/v1/adapters/tuned", headers=AUTH),
                 lambda: client.post("/v1/adapters", headers=AUTH, json={"name": "tuned", "path": str(models[2])})):
        response = while_held(scheduler, call)
        assert response.status_code == 409, response.text
        assert response.json()["error"]["code"] == "adapter_in_use"
    assert len([first, *job]) == 60 and ids(client) == ["base", "tuned"]
    assert client.delete("/v1/adapters/tuned", headers=AUTH).status_code == 200  # once it has finished


def test_the_adapter_routes_are_in_the_openapi_schema(client):
    paths = client.get("/openapi.json").json()["paths"]
    assert "post" in paths["/v1/adapters"] and "delete" in paths["/v1/adapters/{name}"]
    assert "422" not in paths["/v1/adapters"]["post"]["responses"]


def test_lora_layers_on_packed_weights_compute_what_plain_ones_do(models):
    """The server packs its weights for the CPU (quantize fp32) before any adapter is loaded at runtime."""
    from fromzero.finetune.peft_format import load_adapter
    from fromzero.generation.quantize import quantize
    from fromzero.models import GPT

    plain = GPT.from_pretrained(str(models[0])).eval()
    packed = quantize(GPT.from_pretrained(str(models[0])), "fp32")
    for model in (plain, packed):
        load_adapter(model, models[1], "tuned")
    x = torch.tensor([[1, 2, 3, 4, 5]])
    with torch.no_grad():
        torch.testing.assert_close(packed(x).logits, plain(x).logits, atol=1e-4, rtol=1e-4)
