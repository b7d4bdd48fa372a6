"""GELU in a CPU training step (fromzero.kernels.activations, fromzero.nn.activation_kernel): the C kernel is as
exact as torch's forward and backward on every vector code path, is measured against torch once per shape and
kept, is forced by FROMZERO_ACTIVATION_KERNEL, and is used only where it applies (an fp32 CPU training step)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from fromzero import machine, tuning
from fromzero.errors import InputError
from fromzero.kernels import activations
from fromzero.models import GPT, GPTConfig
from fromzero.nn import FeedForward, activate, activation_kernel
from fromzero.kernels.activations import torch_activation
from fromzero.nn.activation_kernel import CHOICE
from fromzero.training.config import TrainConfig
from fromzero.training.trainer import Trainer
from test_kernels_gemv import FLAGS, compiled_for  # each vector code path, built on purpose

VARIABLE = "FROMZERO_ACTIVATION_KERNEL"
needs_kernel = pytest.mark.skipif(activations.unavailable_reason() is not None,
                                  reason=f"no C kernels here: {activations.unavailable_reason()}")
pytestmark = needs_kernel
KINDS = ["gelu", "gelu_new", "relu"]


def truth(x: torch.Tensor, kind: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The activation of ``x`` and its derivative, in float64 by torch's autograd."""
    leaf = x.double().requires_grad_()
    y = torch_activation(leaf, kind)
    y.sum().backward()
    return y.detach(), leaf.grad


def decisions() -> dict:
    return tuning.read_decisions().get(machine.fingerprint(), {}).get(CHOICE, {})


# ---------------------------------------------------------------- the C kernel against the float64 truth

def assert_as_exact_as_torch(kind: str, forward) -> None:
    """``forward(x) -> (y, slope)`` within a few ulps of float64, and no further from it than torch."""
    x = torch.linspace(-12, 12, 100_003)  # not a multiple of any vector width: the loops' tails run too
    y, slope = truth(x, kind)
    ones = torch.ones_like(x)
    bound = 1e-7 + 1e-6 * x.double().abs()  # a few ulps of x, also where GELU is ~1e-30
    value, slope_at = forward(x)
    ours = (value.double() - y).abs()
    torchs = (torch_activation(x, kind).double() - y).abs()
    assert bool((ours <= bound).all()) and bool((torchs <= bound).all())
    assert ours.max() <= 2 * torchs.max() + 1e-7
    # the derivative: erf's and tanh's own rounding, a few ulps of 1 (GELU' is between -0.13 and 1.13)
    ours = (slope_at.double() - slope).abs()
    torchs = (torch.ops.aten.threshold_backward(ones, x, 0) if kind == "relu" else torch.ops.aten.gelu_backward(
        ones, x, approximate="tanh" if kind == "gelu_new" else "none")).double().sub(slope).abs()
    assert ours.max() <= 5e-7 and ours.max() <= 2 * torchs.max() + 1e-7


@pytest.mark.parametrize("kind", KINDS)
def test_the_kernel_is_as_exact_as_torch_forward_and_backward(kind):
    assert_as_exact_as_torch(kind, lambda x: activations.forward_with_slope(x, kind))
    x = torch.randn(1000, generator=torch.Generator().manual_seed(0))
    assert torch.equal(activations.forward(x, kind), activations.forward_with_slope(x, kind)[0])


@pytest.mark.parametrize("kind", KINDS)
def test_extremes_give_what_float64_gives(kind):
    x = torch.tensor([0.0, -0.0, 1e-30, -1e-30, 40.0, -40.0, 1e4, -1e4, 3e38, -3e38, math.inf, -math.inf, math.nan])
    y, slope = truth(x, kind)
    torch.testing.assert_close(activations.forward(x, kind), y.float(), equal_nan=True)
    finite = x.abs() < 1e4  # u * phi(u) at 1e4 is inf * 0 in any float
    value, slope_at = activations.forward_with_slope(x, kind)
    torch.testing.assert_close(value, y.float(), equal_nan=True)
    torch.testing.assert_close(slope_at[finite], slope.float()[finite], equal_nan=True)


@pytest.mark.parametrize("isa", list(FLAGS))
def test_every_vector_code_path_is_as_exact(isa, tmp_path):
    lib = activations.bind(compiled_for(isa, "activations", tmp_path))

    def forward(x, kind):
        y, slope = torch.empty_like(x), torch.empty_like(x)
        lib.fromzero_activation_forward(activations.KINDS[kind], x.data_ptr(), y.data_ptr(), slope.data_ptr(),
                                        x.numel(), 2)
        return y, slope

    for kind in KINDS:
        assert_as_exact_as_torch(kind, lambda x: forward(x, kind))


def test_the_result_does_not_depend_on_the_thread_count():
    x = torch.randn(300_000, generator=torch.Generator().manual_seed(3))
    before = torch.get_num_threads()
    try:
        results = []
        for count in (1, 2):
            torch.set_num_threads(count)
            results.append(activations.forward_with_slope(x, "gelu"))
    finally:
        torch.set_num_threads(before)
    assert all(torch.equal(a, b) for a, b in zip(*results))


# ---------------------------------------------------------------- the choice

@pytest.mark.parametrize("kind", ["gelu", "gelu_new"])
def test_a_forced_native_kernel_runs_forward_and_backward_in_c(monkeypatch, kind):
    monkeypatch.setenv(VARIABLE, "native")
    x = torch.randn(6, 40, generator=torch.Generator().manual_seed(0)).requires_grad_()
    grad = torch.randn(6, 40, generator=torch.Generator().manual_seed(1)).t().contiguous().t()  # not contiguous
    y = activate(x, kind)
    assert type(y.grad_fn).__name__ == "NativeActivationBackward"
    y.backward(grad)
    value, slope = activations.forward_with_slope(x.detach(), kind)
    assert torch.equal(y, value) and torch.equal(x.grad, grad * slope)
    assert decisions() == {}  # forced: nothing measured


def test_a_backward_differentiated_again_asks_for_torchs_kernel(monkeypatch):
    """The C kernel keeps the slope, not x: a second derivative cannot be had from it, and nothing is silently
    dropped (a Hessian-vector product without GELU's second derivative would be wrong)."""
    monkeypatch.setenv(VARIABLE, "native")
    leaf = torch.randn(5, 9, generator=torch.Generator().manual_seed(0)).requires_grad_()
    with pytest.raises(RuntimeError, match="FROMZERO_ACTIVATION_KERNEL=torch to differentiate a backward again"):
        torch.autograd.grad(activate(leaf, "gelu").sum(), leaf, create_graph=True)
    monkeypatch.setenv(VARIABLE, "torch")
    (slope,) = torch.autograd.grad(activate(leaf, "gelu").sum(), leaf, create_graph=True)
    slope.pow(2).sum().backward()  # as it always could
    assert leaf.grad is not None


def test_measured_once_per_size_class_recorded_and_reused(monkeypatch):
    monkeypatch.delenv(VARIABLE)
    x = torch.randn(4, 8, 64).requires_grad_()  # 2048 floats
    state = torch.get_rng_state()
    activate(x, "gelu").sum().backward()
    assert torch.equal(torch.get_rng_state(), state)  # measuring used its own random numbers
    (key, decision), = decisions().items()
    assert key.startswith("gelu elements<=2048 threads=")
    assert set(decision["median_seconds"]) == {"torch", "native"}
    assert decision["chosen"] == min(decision["median_seconds"], key=decision["median_seconds"].get)

    # a later process takes the kept decision without measuring: a hand-edited file changes the kernel
    data = tuning.read_decisions()
    for chosen, backward_name in (("native", "NativeActivationBackward"), ("torch", "GeluBackward0")):
        data[machine.fingerprint()][CHOICE][key]["chosen"] = chosen
        tuning.decisions_path().write_text(json.dumps(data))
        activation_kernel._chosen.clear()  # what a new process starts with
        assert type(activate(x, "gelu").grad_fn).__name__ == backward_name

    # a batch padded to another length in the same class (1025 to 2048 floats) is not measured again
    activation_kernel._chosen.clear()
    assert type(activate(torch.randn(3, 7, 64).requires_grad_(), "gelu").grad_fn).__name__ == "GeluBackward0"
    assert len(decisions()) == 1
    activate(torch.randn(2, 8, 64).requires_grad_(), "gelu")  # 1024 floats: a class of its own
    activate(torch.randn(2, 8, 64).requires_grad_(), "gelu_new")  # and each kind
    assert set(decisions()) == {key, key.replace("2048", "1024"), key.replace("gelu ", "gelu_new ").replace("2048", "1024")}


@pytest.mark.parametrize("case", ["no grad", "input without grad", "bf16", "float64", "relu"])
def test_only_an_fp32_training_step_is_concerned(monkeypatch, case):
    monkeypatch.setenv(VARIABLE, "native")
    x = torch.randn(4, 16, generator=torch.Generator().manual_seed(0))
    kind = "relu" if case == "relu" else "gelu"
    x = x.to({"bf16": torch.bfloat16, "float64": torch.float64}.get(case, torch.float32))
    if case not in ("no grad", "input without grad"):
        x.requires_grad_()
    with torch.set_grad_enabled(case != "no grad"):
        y = activate(x, kind)
    assert y.grad_fn is None or "Native" not in type(y.grad_fn).__name__
    assert torch.equal(y, torch_activation(x, kind))


def test_an_unknown_forced_value_is_a_clear_error(monkeypatch):
    monkeypatch.setenv(VARIABLE, "cuda")
    with pytest.raises(InputError, match="FROMZERO_ACTIVATION_KERNEL='cuda' is not one of torch, native"):
        activate(torch.randn(3, 4, requires_grad=True), "gelu")


def test_an_unknown_activation_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown activation 'swish'"):
        activate(torch.randn(3), "swish")


# ---------------------------------------------------------------- in the layers and in training

@pytest.mark.parametrize("kind", ["gelu", "gelu_new"])
def test_the_feed_forward_layer_gets_the_same_gradients_either_way(monkeypatch, kind):
    torch.manual_seed(0)
    layer = FeedForward(32, 128, activation=kind)
    x = torch.randn(3, 7, 32)
    grads = {}
    for forced in ("torch", "native"):
        monkeypatch.setenv(VARIABLE, forced)
        layer.zero_grad()
        layer(x).pow(2).sum().backward()
        grads[forced] = [p.grad.clone() for p in layer.parameters()]
    for a, b in zip(grads["torch"], grads["native"]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_a_training_run_with_the_native_kernel_follows_the_torch_run(monkeypatch):
    tokens = np.random.default_rng(0).integers(0, 64, 4000).astype(np.uint16)

    def losses(forced: str) -> list[float]:
        monkeypatch.setenv(VARIABLE, forced)
        torch.manual_seed(0)
        model = GPT(GPTConfig(vocab_size=64, block_size=16, n_layer=2, n_head=2, n_embd=32, activation="gelu"))
        config = TrainConfig(dtype="float32", block_size=16, batch_size=4, max_steps=8, eval_interval=100,
                             device="cpu")
        trainer = Trainer(model, config, tokens, tokens, quiet=True)
        return [trainer.train_step(step).item() for step in range(8)]

    assert losses("native") == pytest.approx(losses("torch"), abs=1e-5)
