"""The continuous-batching scheduler: every request gets what unbatched ``generate`` gives it.

Requests of different lengths, arriving at different times, with different settings and adapters,
share forward passes; each one's tokens are compared with ``generate`` on that request alone.
"""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
import torch

from fromzero.errors import InputError
from fromzero.finetune.lora import LoRAConfig, add_adapter, lora_layers, using_adapter
from fromzero.generation import GenerationConfig, fused_step, generate, quantize
from fromzero.generation.batching import QueueFull, Scheduler
from fromzero.models import GPT, GPTConfig
from fromzero.tokenizers import CharTokenizer

VOCAB = 40


def tiny_model(block_size: int = 64, seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=VOCAB, block_size=block_size, n_layer=2, n_head=2, n_embd=32, dropout=0.0)).eval()


def prompts(count: int, seed: int = 1) -> list[list[int]]:
    rng = torch.Generator().manual_seed(seed)
    return [torch.randint(0, VOCAB, (int(torch.randint(1, 20, (1,), generator=rng)),), generator=rng).tolist()
            for _ in range(count)]


def alone(model: GPT, ids: list[int], config: GenerationConfig, tokenizer=None) -> list[int]:
    """What ``generate`` gives this request on its own: its new tokens, up to and with its eos."""
    out = generate(model, torch.tensor([ids]), config, tokenizer=tokenizer)[0, len(ids):].tolist()
    eos = set(config.eos_ids)
    for i, token in enumerate(out):
        if token in eos:
            return out[:i + 1]
    return out


@pytest.fixture
def scheduler_for():
    made = []

    def make(model, **kwargs) -> Scheduler:
        made.append(Scheduler(model, **kwargs))
        return made[-1]

    yield make
    for scheduler in made:
        scheduler.close()


def test_greedy_requests_batched_get_exactly_their_unbatched_tokens(scheduler_for):
    model = tiny_model()
    scheduler = scheduler_for(model, max_batch=6)
    requests = [(ids, GenerationConfig(max_new_tokens=5 + 7 * (i % 4), eos_token_id=i % 5))
                for i, ids in enumerate(prompts(10))]
    jobs = [scheduler.submit(ids, config) for ids, config in requests]
    for job, (ids, config) in zip(jobs, requests):
        assert list(job) == alone(model, ids, config)
        expected = "stop" if job.tokens[-1] in config.eos_ids else "length"
        assert job.finish_reason == expected
    assert scheduler.running == 0 and scheduler.steps < sum(len(job.tokens) for job in jobs)  # passes were shared


def test_seeded_sampling_is_the_same_whatever_else_is_in_the_batch(scheduler_for):
    model = tiny_model()
    configs = [GenerationConfig(max_new_tokens=30, do_sample=True, temperature=t, top_k=k, top_p=p,
                                repetition_penalty=r, seed=s)
               for t, k, p, r, s in [(0.8, 10, 1.0, 1.0, 1), (1.2, None, 0.9, 1.3, 2), (1.0, 5, 0.8, 1.0, 3)]]
    batched = scheduler_for(model, max_batch=8)
    jobs = [batched.submit(ids, config) for ids, config in zip(prompts(3, seed=5), configs)]
    noise = [batched.submit(ids, GenerationConfig(max_new_tokens=40, do_sample=True)) for ids in prompts(4, 9)]
    for job, ids, config in zip(jobs, prompts(3, seed=5), configs):
        assert list(job) == alone(model, ids, config)
    for job in noise:
        list(job)


def test_requests_join_and_leave_while_others_run_and_the_cache_is_compacted(scheduler_for):
    """A short context (48) forces rebuilds: rows that start late sit beside rows that are nearly done."""
    model = tiny_model(block_size=48)
    scheduler = scheduler_for(model, max_batch=4)
    work = [(ids, GenerationConfig(max_new_tokens=48 - len(ids) - i)) for i, ids in enumerate(prompts(9, seed=3))]
    jobs = []
    for ids, config in work:
        jobs.append(scheduler.submit(ids, config))
        time.sleep(0.005)  # arrive while the earlier ones are decoding
    for job, (ids, config) in zip(jobs, work):
        assert list(job) == alone(model, ids, config)


def test_each_adapter_group_runs_its_own_adapter_and_the_base_stays_the_base(scheduler_for):
    model = tiny_model()
    for name, seed in (("first", 1), ("second", 2)):
        add_adapter(model, name, LoRAConfig(r=4, target_modules=("c_attn", "c_fc")))
        torch.manual_seed(seed)
        for layer in lora_layers(model).values():
            torch.nn.init.normal_(layer.lora_B[name].weight, std=0.5)
    scheduler = scheduler_for(model, max_batch=8, activate=lambda name: using_adapter(model, name))
    config = GenerationConfig(max_new_tokens=12)
    ids = prompts(1, seed=7)[0]
    jobs = {name: scheduler.submit(ids, config, adapter=name) for name in ("first", None, "second")}
    results = {name: list(job) for name, job in jobs.items()}
    for name in ("first", None, "second"):
        with using_adapter(model, name):
            assert results[name] == alone(model, ids, config), name
    assert len({tuple(tokens) for tokens in results.values()}) == 3  # the adapters really differ


@pytest.mark.skipif(fused_step.unavailable_reason() is not None, reason=f"no fused step: {fused_step.unavailable_reason()}")
@pytest.mark.parametrize("mode", ["fp32", "int8"])
def test_a_model_converted_to_gemv_steps_fused_with_its_adapters_and_gets_the_same_tokens(mode, scheduler_for,
                                                                                           monkeypatch):
    """Right-aligned rows of different lengths and adapter groups, each step one call to C (up to 4 rows in
    fp32, 16 in int8; more go eager): every request still gets its unbatched tokens."""
    monkeypatch.setenv({"fp32": "FROMZERO_LINEAR_KERNEL", "int8": "FROMZERO_INT8_KERNEL"}[mode], "gemv")
    model = tiny_model()
    add_adapter(model, "tuned", LoRAConfig(r=4, target_modules=("c_attn", "c_fc")))
    torch.manual_seed(3)
    for layer in lora_layers(model).values():
        torch.nn.init.normal_(layer.lora_B["tuned"].weight, std=0.5)
    quantize(model, mode, rows=4)
    requests = [(ids, GenerationConfig(max_new_tokens=6 + 5 * (i % 3)), "tuned" if i % 2 else None)
                for i, ids in enumerate(prompts(7, seed=11))]
    monkeypatch.setenv("FROMZERO_FUSED_STEP", "0")  # the reference: generate alone, eager steps
    expected = []
    for ids, config, adapter in requests:
        with using_adapter(model, adapter):
            expected.append(alone(model, ids, config))
    monkeypatch.delenv("FROMZERO_FUSED_STEP")
    scheduler = scheduler_for(model, max_batch=6, activate=lambda name: using_adapter(model, name))
    jobs = [scheduler.submit(ids, config, adapter=adapter) for ids, config, adapter in requests]
    assert [list(job) for job in jobs] == expected
    assert scheduler._fused[None] is not None and scheduler._fused["tuned"] is not None  # both groups fused
    scheduler.run_between_steps(lambda: None).result(timeout=10)  # how a server loads or drops an adapter
    assert scheduler._fused == {}  # built again, from the adapters as they are then


def test_stop_strings_end_a_request_and_async_readers_get_the_same_tokens(scheduler_for):
    tokenizer = CharTokenizer.train("abcdefghijklmnopqrstuvwxyz .,!?ABCDEFGHIJKLM")
    model = tiny_model()
    scheduler = scheduler_for(model, max_batch=4)
    ids = tokenizer.encode("the cat")
    plain = alone(model, ids, GenerationConfig(max_new_tokens=30), tokenizer)
    stop = tokenizer.decode(plain[5:7])  # a string the greedy answer is known to contain
    config = GenerationConfig(max_new_tokens=30, stop_strings=[stop])

    async def read() -> list[int]:
        job = scheduler.submit(ids, config, tokenizer=tokenizer, loop=asyncio.get_running_loop())
        tokens = [token async for token in job]
        assert job.finish_reason == "stop"
        return tokens

    tokens = asyncio.run(read())
    assert tokens == alone(model, ids, config, tokenizer) and stop in tokenizer.decode(tokens)


def test_a_cancelled_request_frees_its_slot_and_a_full_queue_says_so(scheduler_for):
    model = tiny_model(block_size=256)
    scheduler = scheduler_for(model, max_batch=1, max_queue=1)
    long = GenerationConfig(max_new_tokens=250)
    first = scheduler.submit([1, 2, 3], long)
    second = scheduler.submit([4, 5], GenerationConfig(max_new_tokens=3))
    with pytest.raises(QueueFull, match="waiting"):
        scheduler.submit([6], GenerationConfig(max_new_tokens=3))
    got = []
    for token in first:
        got.append(token)
        if len(got) == 2:
            first.cancel()
    assert first.finish_reason == "cancelled" and len(got) < 250
    assert list(second) == alone(model, [4, 5], GenerationConfig(max_new_tokens=3))


def test_bad_requests_are_refused_before_they_queue(scheduler_for):
    scheduler = scheduler_for(tiny_model(block_size=32))
    with pytest.raises(InputError, match="exceeds the model's context"):
        scheduler.submit(list(range(30)), GenerationConfig(max_new_tokens=10))
    with pytest.raises(InputError, match="one sequence per request"):
        scheduler.submit([1], GenerationConfig(num_beams=2))
    with pytest.raises(InputError, match=r"\[0, 40\)"):
        scheduler.submit([99], GenerationConfig())
    with pytest.raises(InputError, match="empty"):
        scheduler.submit([], GenerationConfig())


def test_close_lets_running_requests_finish(scheduler_for):
    scheduler = scheduler_for(tiny_model(), max_batch=2)
    job = scheduler.submit([1, 2], GenerationConfig(max_new_tokens=20))
    closer = threading.Thread(target=scheduler.close)
    closer.start()
    assert len(list(job)) == 20 and job.finish_reason == "length"
    closer.join(5)
    with pytest.raises(InputError, match="shutting down"):
        scheduler.submit([1], GenerationConfig())
