"""The prefix cache: longest-prefix lookups, LRU eviction, invalidation, and that reusing cached keys and
values changes nothing in what the scheduler and the server answer.

The reference for every answer is the same request without the cache (and ``generate`` on it alone):
greedy tokens equal, logits equal up to float rounding.
"""

from __future__ import annotations

import pytest
import torch

import fromzero.generation.batching as batching
from fromzero.cli import main
from fromzero.errors import InputError
from fromzero.finetune.lora import LoRAConfig, add_adapter, lora_layers, using_adapter
from fromzero.generation import GenerationConfig, generate
from fromzero.generation.batching import Scheduler
from fromzero.generation.prefix_cache import PrefixCache
from fromzero.models import GPT, GPTConfig

VOCAB = 40
LAYERS, HEADS, HEAD_DIM = 2, 2, 4
TOKEN_BYTES = 2 * LAYERS * HEADS * HEAD_DIM * 4  # keys and values of one token, float32


def fake_kv(n: int, seed: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Per-layer keys and values (n_head, n, head_dim) of ``n`` tokens."""
    rng = torch.Generator().manual_seed(seed)
    return ([torch.randn(HEADS, n, HEAD_DIM, generator=rng) for _ in range(LAYERS)],
            [torch.randn(HEADS, n, HEAD_DIM, generator=rng) for _ in range(LAYERS)])


def stacked(keys: list[torch.Tensor], values: list[torch.Tensor], n: int) -> torch.Tensor:
    return torch.stack([torch.stack([k[:, :n] for k in keys]), torch.stack([v[:, :n] for v in values])])


# ---------------------------------------------------------------- the cache on its own

def test_lookup_finds_the_longest_cached_prefix_with_its_keys_and_values():
    cache = PrefixCache(1 << 20)
    first, second = fake_kv(6, 1), fake_kv(5, 2)
    cache.insert(None, [1, 2, 3, 4, 5, 6], *first)
    cache.insert(None, [1, 2, 3, 9, 9], *second)  # shares 3 tokens with the first: the edge is split

    n, pieces = cache.lookup(None, [1, 2, 3, 4, 5, 7, 7])
    assert n == 5 and len(pieces) == 2  # the edge [1, 2, 3], then part of [4, 5, 6]
    assert torch.equal(torch.cat(pieces, dim=-2), stacked(*first, 5))
    n, pieces = cache.lookup(None, [1, 2, 3, 9, 9, 9])
    kv = torch.cat(pieces, dim=-2)
    # the shared 3 tokens come from whichever sequence stored them first: same K/V in a real model
    assert n == 5 and torch.equal(kv[..., :3, :], stacked(*first, 3))
    assert torch.equal(kv[..., 3:, :], stacked(*second, 5)[..., 3:, :])
    assert cache.lookup(None, [1, 2])[0] == 2  # a prompt shorter than any entry
    assert cache.lookup(None, [7, 1, 2, 3]) == (0, [])
    assert cache.lookup("adapter", [1, 2, 3, 4]) == (0, [])  # K/V depend on the adapter
    assert (cache.hits, cache.misses, cache.reused) == (3, 2, 12)
    assert cache.bytes == (6 + 2) * TOKEN_BYTES  # the shared part is stored once


def test_least_recently_used_entries_go_first_under_a_tiny_budget():
    cache = PrefixCache(9 * TOKEN_BYTES)
    for seed, ids in enumerate(([1, 1, 1, 1], [2, 2, 2, 2])):
        cache.insert(None, ids, *fake_kv(4, seed))
    assert cache.lookup(None, [1, 1, 1, 1])[0] == 4  # [1...] is now more recent than [2...]
    cache.insert(None, [3, 3, 3, 3], *fake_kv(4, 3))  # 12 tokens > 9: one entry must go
    assert cache.lookup(None, [2, 2, 2, 2])[0] == 0
    assert cache.lookup(None, [1, 1, 1, 1])[0] == 4 and cache.lookup(None, [3, 3, 3, 3])[0] == 4
    assert cache.bytes == 8 * TOKEN_BYTES <= cache.budget_bytes

    cache.insert(None, [3, 3, 3, 3, 4, 4, 4, 4], *fake_kv(8, 4))  # extends [3...]: 12 again, [1...] goes
    assert cache.lookup(None, [1, 1, 1, 1])[0] == 0 and cache.lookup(None, [3, 3, 3, 3, 4, 4, 4, 4])[0] == 8
    cache.insert(None, list(range(10)), *fake_kv(10, 5))  # larger than the whole budget: not kept
    assert cache.lookup(None, list(range(10)))[0] == 0 and cache.bytes == 8 * TOKEN_BYTES


def test_invalidate_drops_one_adapters_entries_and_clear_drops_all():
    cache = PrefixCache(1 << 20)
    for adapter in (None, "first", "second"):
        cache.insert(adapter, [1, 2, 3], *fake_kv(3, 0))
    cache.invalidate("first")
    assert cache.lookup("first", [1, 2, 3])[0] == 0
    assert cache.lookup(None, [1, 2, 3])[0] == 3 and cache.lookup("second", [1, 2, 3])[0] == 3
    assert cache.bytes == 2 * 3 * TOKEN_BYTES
    cache.clear()
    assert cache.lookup(None, [1, 2, 3])[0] == 0 and cache.lookup("second", [1, 2, 3])[0] == 0 and cache.bytes == 0
    with pytest.raises(InputError, match="cover"):
        cache.insert(None, [1, 2], *fake_kv(3, 0))


# ---------------------------------------------------------------- through the scheduler

def tiny_model(block_size: int = 96, adapters: tuple[str, ...] = ()) -> GPT:
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=VOCAB, block_size=block_size, n_layer=2, n_head=2, n_embd=32, dropout=0.0))
    for seed, name in enumerate(adapters, 1):
        add_adapter(model, name, LoRAConfig(r=4, target_modules=("c_attn", "c_fc")))
        torch.manual_seed(seed)
        for layer in lora_layers(model).values():
            torch.nn.init.normal_(layer.lora_B[name].weight, std=0.5)
    return model.eval()


def alone(model: GPT, ids: list[int], config: GenerationConfig, adapter: str | None = None) -> list[int]:
    """What ``generate`` gives this request on its own."""
    with using_adapter(model, adapter):
        return generate(model, torch.tensor([ids]), config)[0, len(ids):].tolist()


@pytest.fixture
def schedulers():
    made = []

    def make(model: GPT, **kwargs) -> Scheduler:
        made.append(Scheduler(model, activate=lambda name: using_adapter(model, name), **kwargs))
        return made[-1]

    yield make
    for scheduler in made:
        scheduler.close()


@pytest.fixture
def picked_logits(monkeypatch) -> list[torch.Tensor]:
    """The logits of every token the scheduler picks, in order (one request at a time keeps it simple)."""
    seen = []

    def spy(processors, sequence, logits):
        seen.append(logits.clone())
        return apply(processors, sequence, logits)

    apply = batching.apply_processors
    monkeypatch.setattr(batching, "apply_processors", spy)
    return seen


def chat(scheduler: Scheduler, adapter: str | None, turns: int = 3) -> tuple[list[list[int]], list[list[int]]]:
    """A conversation: each prompt is the previous one, its answer and a new question. (prompts, answers)."""
    rng = torch.Generator().manual_seed(4)
    prompts, answers, ids = [], [], []
    config = GenerationConfig(max_new_tokens=6)
    for _ in range(turns):
        ids = ids + torch.randint(0, VOCAB, (7,), generator=rng).tolist()
        prompts.append(ids)
        answers.append(list(scheduler.submit(ids, config, adapter=adapter)))
        ids = ids + answers[-1]
    return prompts, answers


@pytest.mark.parametrize("adapter", [None, "first"])
def test_a_chat_gets_the_same_tokens_and_logits_with_the_cache_as_without(schedulers, picked_logits, adapter):
    model = tiny_model(adapters=("first", "second"))
    cached = schedulers(model, prefix_cache_mb=1)
    prompts, answers = chat(cached, adapter)
    with_cache = list(picked_logits)
    picked_logits.clear()
    _, plain_answers = chat(schedulers(model), adapter)

    assert answers == plain_answers
    for prompt, answer in zip(prompts, answers):
        assert answer == alone(model, prompt, GenerationConfig(max_new_tokens=6), adapter)
    torch.testing.assert_close(torch.cat(with_cache), torch.cat(picked_logits), rtol=1e-5, atol=1e-5)
    # each later turn found the whole previous exchange (its prompt and all of its answer but the last token)
    assert cached.prefix_cache.reused == sum(len(p) + len(a) - 1 for p, a in zip(prompts[:-1], answers[:-1]))
    assert cached.prefix_cache.lookup("second" if adapter else "first", prompts[-1])[0] == 0  # not another's


def test_mixed_batches_cancellation_and_refusals_keep_working_with_the_cache(schedulers):
    model = tiny_model(block_size=64)
    scheduler = schedulers(model, max_batch=4, prefix_cache_mb=1)
    config = GenerationConfig(max_new_tokens=8)
    shared = list(range(1, 21))
    list(scheduler.submit(shared + [30], config))  # warms the cache with the 20-token head
    prompts = [shared + [31, 32], [5, 4, 3, 2, 1], shared[:12] + [33], [9] * 15, shared + [34]]
    cancelled = scheduler.submit(shared + [35], GenerationConfig(max_new_tokens=40))
    jobs = [scheduler.submit(ids, config) for ids in prompts]
    for count, _ in enumerate(cancelled, 1):
        if count == 2:
            cancelled.cancel()  # leaves mid-answer: its row's K/V are offered like any other's
    assert cancelled.finish_reason == "cancelled" and len(cancelled.tokens) < 40
    for job, ids in zip(jobs, prompts):
        assert list(job) == alone(model, ids, config)
    assert scheduler.prefix_cache.hits >= 4 and scheduler.prefix_cache.misses >= 2
    with pytest.raises(InputError, match="exceeds the model's context"):
        scheduler.submit([1] * 70, config)
    again = scheduler.submit(shared + [31, 32], config)  # a repeated prompt: all but its last token cached
    assert list(again) == alone(model, shared + [31, 32], config)


def test_changed_weights_clear_the_cache(schedulers):
    model = tiny_model()
    scheduler = schedulers(model, prefix_cache_mb=1)
    ids, config = list(range(1, 30)), GenerationConfig(max_new_tokens=6)
    list(scheduler.submit(ids, config))
    with torch.no_grad():
        model.transformer.h[0].attn.c_attn.weight.mul_(3.0)  # stale K/V would now give other tokens
    assert list(scheduler.submit(ids + [1], config)) == alone(model, ids + [1], config)
    assert scheduler.prefix_cache.reused == 0


def test_no_cache_with_zero_megabytes_and_a_negative_size_is_refused(tmp_path):
    assert Scheduler(tiny_model(), prefix_cache_mb=0).prefix_cache is None
    with pytest.raises(InputError, match="prefix cache"):
        Scheduler(tiny_model(), prefix_cache_mb=-1)
    assert main(["serve", "--model", str(tmp_path), "--prefix-cache-mb", "-1"]) == 2


# ---------------------------------------------------------------- through the HTTP API

@pytest.fixture(scope="module")
def chat_model(tmp_path_factory):
    """A tiny random GPT with a BPE tokenizer and the chat template: a real multi-turn prompt."""
    from fromzero.files import write_json
    from fromzero.finetune.templates import TEMPLATES
    from fromzero.finetune.vocab import add_special_tokens
    from fromzero.tokenizers import BPETokenizer

    folder = tmp_path_factory.mktemp("prefix") / "chat"
    text = "What do cats say? Cats say meow. Where do fish live? Fish live in water. " * 5
    bpe = add_special_tokens(BPETokenizer.train(text, 300), TEMPLATES["chat"].special_tokens)
    torch.manual_seed(0)
    model = GPT(GPTConfig.preset("tiny", vocab_size=bpe.vocab_size, block_size=160))
    with torch.no_grad():  # large random weights: the answer depends on the whole prompt
        for weight in (p for p in model.parameters() if p.dim() >= 2):
            weight.normal_(0, 0.5)
    model.save_pretrained(folder)
    bpe.save(folder)
    write_json(folder / "finetune.json", {"method": "sft", "template": "chat"})
    return folder


def two_turns(app) -> tuple[list[str], list[dict]]:
    from starlette.testclient import TestClient

    messages, answers, usages = [], [], []
    with TestClient(app) as client:
        for question in ("What do cats say?", "Where do fish live?"):
            messages.append({"role": "user", "content": question})
            response = client.post("/v1/chat/completions",
                                   json={"model": "base", "messages": messages, "max_tokens": 10, "temperature": 0})
            assert response.status_code == 200, response.text
            answers.append(response.json()["choices"][0]["message"]["content"])
            usages.append(response.json()["usage"])
            messages.append({"role": "assistant", "content": answers[-1]})
    return answers, usages


def test_a_two_turn_chat_over_http_answers_the_same_with_the_cache_on_and_off(chat_model):
    pytest.importorskip("fastapi", reason="the server needs the serve extra")
    from fromzero.serve.app import create_app

    on, off = create_app(str(chat_model)), create_app(str(chat_model), prefix_cache_mb=0)
    answers, usages = two_turns(on)
    assert answers == two_turns(off)[0]
    assert off.state.scheduler.prefix_cache is None
    cache = on.state.scheduler.prefix_cache
    assert cache.hits >= 1 and cache.reused >= usages[0]["prompt_tokens"]  # turn 2 reused all of turn 1's prompt
