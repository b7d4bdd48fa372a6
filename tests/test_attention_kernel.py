"""The precision of attention in a CPU autocast training step (fromzero.nn.attention_kernel): measured once per
shape and kept, forced by FROMZERO_ATTENTION_PRECISION, exact to the precision it names, and used only where
it applies (a training step under CPU autocast)."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from fromzero import machine, tuning
from fromzero.errors import InputError
from fromzero.models import GPT, GPTConfig
from fromzero.nn import CrossAttention, MultiHeadAttention
from fromzero.nn import attention_kernel
from fromzero.nn.attention_kernel import CHOICE, attend

VARIABLE = "FROMZERO_ATTENTION_PRECISION"


def qkv(shape=(3, 2, 8, 16), dtype=torch.bfloat16, seed=0) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=generator).to(dtype).requires_grad_() for _ in range(3)]


def run(q, k, v, **kwargs) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """attend under bf16 autocast; its output and the gradients of q, k, v."""
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = attend(q, k, v, **kwargs)
    (y.float() * torch.linspace(-1, 1, y.shape[-1])).sum().backward()
    return y.detach(), [t.grad for t in (q, k, v)]


def reference(q, k, v, dtype, **kwargs) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """SDPA by hand in ``dtype``, without autocast, cast back to the inputs' dtype."""
    leaves = [t.detach().clone().requires_grad_() for t in (q, k, v)]
    y = F.scaled_dot_product_attention(*(t.to(dtype) for t in leaves), **kwargs).to(q.dtype)
    (y.float() * torch.linspace(-1, 1, y.shape[-1])).sum().backward()
    return y.detach(), [t.grad for t in leaves]


def decisions() -> dict:
    return tuning.read_decisions().get(machine.fingerprint(), {}).get(CHOICE, {})


@pytest.mark.parametrize("forced, dtype", [("float32", torch.float32), ("autocast", torch.bfloat16)])
@pytest.mark.parametrize("causal", [True, False])
def test_a_forced_precision_computes_exactly_that(monkeypatch, forced, dtype, causal):
    monkeypatch.setenv(VARIABLE, forced)
    q, k, v = qkv()
    y, grads = run(q, k, v, is_causal=causal)
    y_ref, grads_ref = reference(q, k, v, dtype, is_causal=causal)
    assert y.dtype == torch.bfloat16  # the layers around attention see autocast's dtype either way
    assert torch.equal(y, y_ref)
    for grad, grad_ref in zip(grads, grads_ref):
        assert torch.equal(grad, grad_ref)
    assert decisions() == {}  # forced: nothing measured


def test_float32_attention_is_closer_to_full_precision(monkeypatch):
    """Why float32 may be chosen without a second thought about accuracy: it is the more exact of the two."""
    q, k, v = qkv((4, 2, 32, 16), seed=1)
    exact, exact_grads = reference(*(t.detach().double().requires_grad_() for t in (q, k, v)), torch.float64,
                                   is_causal=True)
    errors = {}
    for forced in ("float32", "autocast"):
        monkeypatch.setenv(VARIABLE, forced)
        leaves = [t.detach().clone().requires_grad_() for t in (q, k, v)]
        y, grads = run(*leaves, is_causal=True)
        errors[forced] = (y.double() - exact).abs().max() + sum((g.double() - e).abs().max()
                                                               for g, e in zip(grads, exact_grads))
    assert errors["float32"] < errors["autocast"]


def test_measured_once_per_shape_recorded_and_reused(monkeypatch):
    monkeypatch.delenv(VARIABLE)
    state = torch.get_rng_state()
    q, k, v = qkv()
    y, _ = run(q, k, v, is_causal=True)
    assert torch.equal(torch.get_rng_state(), state)  # measuring used its own random numbers
    (key, decision), = decisions().items()
    assert "q=(3, 2, 8, 16)" in key and "bfloat16" in key and "causal=True" in key
    assert set(decision["median_seconds"]) == {"autocast", "float32"}
    assert decision["chosen"] == min(decision["median_seconds"], key=decision["median_seconds"].get)
    expected, _ = reference(q, k, v, torch.float32 if decision["chosen"] == "float32" else torch.bfloat16,
                            is_causal=True)
    assert torch.equal(y, expected)

    # a later process takes the kept decision without measuring: a hand-edited file changes the precision
    data = tuning.read_decisions()
    other = "autocast" if decision["chosen"] == "float32" else "float32"
    data[machine.fingerprint()][CHOICE][key]["chosen"] = other
    tuning.decisions_path().write_text(json.dumps(data))
    attention_kernel._chosen.clear()  # what a new process starts with
    y2, _ = run(*(t.detach().clone().requires_grad_() for t in (q, k, v)), is_causal=True)
    expected2, _ = reference(q, k, v, torch.float32 if other == "float32" else torch.bfloat16, is_causal=True)
    assert torch.equal(y2, expected2)

    run(*qkv((3, 2, 6, 16)), is_causal=True)  # a batch padded to 6 positions: the class of 5 to 8, kept
    assert len(decisions()) == 1
    run(*qkv((2, 2, 8, 16)), is_causal=True)  # a new shape is measured on its own
    assert len(decisions()) == 2 and any("q=(2, 2, 8, 16)" in key for key in decisions())


def test_a_padding_mask_is_measured_in_its_length_class(monkeypatch):
    monkeypatch.delenv(VARIABLE)
    q, k, v = qkv((2, 2, 7, 16))
    mask = torch.ones(2, 1, 1, 7, dtype=torch.bool)  # a key-padding mask, broadcast over heads and queries
    mask[0, ..., :2] = False
    y, _ = run(q, k, v, mask=mask)
    (key, decision), = decisions().items()
    assert "q=(2, 2, 8, 16)" in key and "mask=(2, 1, 1, 8)" in key
    expected, _ = reference(q, k, v, torch.float32 if decision["chosen"] == "float32" else torch.bfloat16,
                            attn_mask=mask)
    assert torch.equal(y, expected)  # measured at 8 positions, computed at 7 with the real mask


@pytest.mark.parametrize("case", ["no autocast", "no grad", "float32 model", "fp32 autocast off inside"])
def test_only_a_training_step_under_cpu_autocast_is_measured(monkeypatch, case):
    monkeypatch.delenv(VARIABLE)
    q, k, v = qkv(dtype=torch.float32 if case == "float32 model" else torch.bfloat16)
    if case == "no autocast":
        y = attend(q, k, v, is_causal=True)
    elif case == "no grad":
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            y = attend(q, k, v, is_causal=True)
    elif case == "float32 model":
        y = attend(q, k, v, is_causal=True)
    else:
        with torch.autocast("cpu", dtype=torch.bfloat16), torch.autocast("cpu", enabled=False):
            y = attend(q, k, v, is_causal=True)
    assert torch.equal(y, F.scaled_dot_product_attention(q, k, v, is_causal=True))
    assert decisions() == {}


def test_an_unknown_forced_value_is_a_clear_error(monkeypatch):
    monkeypatch.setenv(VARIABLE, "fp8")
    with pytest.raises(InputError, match="FROMZERO_ATTENTION_PRECISION='fp8' is not one of autocast, float32"):
        run(*qkv(), is_causal=True)


@pytest.mark.parametrize("forced", ["float32", "autocast"])
def test_the_layers_attend_in_the_chosen_precision(monkeypatch, forced):
    """MultiHeadAttention and CrossAttention go through attend: forcing the choice changes their gradients."""
    monkeypatch.setenv(VARIABLE, forced)
    torch.manual_seed(0)
    self_attention, cross = MultiHeadAttention(32, 2), CrossAttention(32, 2)
    x = torch.randn(2, 8, 32)
    memory = torch.randn(2, 5, 32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y, _ = self_attention(x, is_causal=True)
        z, _ = cross(x, cross.memory_kv(memory))
    (y.float().sum() + z.float().sum()).backward()
    grads = [p.grad.clone() for p in (*self_attention.parameters(), *cross.parameters())]
    monkeypatch.setenv(VARIABLE, "float32" if forced == "autocast" else "autocast")
    for module in (self_attention, cross):
        module.zero_grad()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y2, _ = self_attention(x, is_causal=True)
        z2, _ = cross(x, cross.memory_kv(memory))
    (y2.float().sum() + z2.float().sum()).backward()
    others = [p.grad for p in (*self_attention.parameters(), *cross.parameters())]
    assert not all(torch.equal(a, b) for a, b in zip(grads, others))
    assert all(torch.allclose(a, b, rtol=0.05, atol=0.05) for a, b in zip(grads, others))


def test_a_bf16_training_run_with_float32_attention_follows_the_fp32_run(monkeypatch):
    """A few steps of a GPT in bf16 autocast with fp32 attention stay close to the same steps in fp32."""
    import numpy as np

    from fromzero.training.config import TrainConfig
    from fromzero.training.trainer import Trainer

    monkeypatch.setenv(VARIABLE, "float32")
    tokens = np.random.default_rng(0).integers(0, 64, 4000).astype(np.uint16)

    def losses(dtype: str) -> list[float]:
        torch.manual_seed(0)
        model = GPT(GPTConfig(vocab_size=64, block_size=16, n_layer=2, n_head=2, n_embd=32))
        config = TrainConfig(dtype=dtype, block_size=16, batch_size=4, max_steps=5, eval_interval=100, device="cpu")
        trainer = Trainer(model, config, tokens, tokens, quiet=True)
        return [trainer.train_step(step).item() for step in range(5)]

    assert losses("bfloat16") == pytest.approx(losses("float32"), abs=0.03)


@pytest.mark.parametrize("forced, dtype", [("float32", torch.float32), ("autocast", torch.bfloat16)])
def test_a_compiled_step_attends_as_the_eager_step_decided(monkeypatch, forced, dtype):
    """A compiled graph cannot time anything: it reads the choice an eager step made at that shape."""
    monkeypatch.setenv(VARIABLE, forced)
    monkeypatch.setattr(attention_kernel, "_for_compiled", {})
    q, k, v = qkv(seed=3)
    run(q, k, v, is_causal=True)  # eager: decides (here: the forced value) and records it for compiled graphs
    assert attention_kernel._for_compiled == {(tuple(q.shape), True): forced}
    torch._dynamo.reset()
    compiled = torch.compile(attend, backend="eager", fullgraph=True)  # traced by dynamo, no code generation
    leaves = [t.detach().clone().requires_grad_() for t in (q, k, v)]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = compiled(*leaves, is_causal=True)
    y_ref, _ = reference(q, k, v, dtype, is_causal=True)
    assert torch.equal(y.detach(), y_ref)
    torch._dynamo.reset()


def test_a_compiled_run_decides_eagerly_first_and_leaves_the_run_untouched(monkeypatch, tmp_path):
    import numpy as np

    from fromzero.training.config import TrainConfig
    from fromzero.training.trainer import Trainer

    monkeypatch.setenv(VARIABLE, "float32")
    monkeypatch.setattr(attention_kernel, "_for_compiled", {})
    monkeypatch.setattr(torch, "compile", lambda model: model)  # what is compiled is not under test here
    tokens = (np.arange(3000) % 32).astype(np.uint16)
    config = TrainConfig(batch_size=4, block_size=16, max_steps=2, eval_interval=2, eval_batches=1, dropout=0.1,
                         sample_tokens=0, dtype="bfloat16", compile=True)
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=32, block_size=16, n_layer=1, n_head=2, n_embd=16, dropout=0.1))
    state = torch.get_rng_state()
    trainer = Trainer(model, config, tokens, tokens, quiet=True)
    assert torch.equal(torch.get_rng_state(), state)  # the eager step's dropout drew from a forked stream
    assert all(p.grad is None for p in model.parameters())
    assert attention_kernel._for_compiled == {((4, 2, 16, 8), True): "float32"}
    assert trainer.model is model
