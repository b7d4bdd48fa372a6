"""NumPy networks: known values, every backward pass against finite differences and torch
autograd, the optimisers against torch.optim, and the neuron / XOR lessons."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fromzero.classic.char_mlp import CharMLP, CharMLPConfig, TrainConfig, train_char_mlp
from fromzero.classic.gradcheck import check_layer, numerical_gradient, relative_error
from fromzero.classic.history import History
from fromzero.classic.layers import (
    GELU,
    MSE,
    Embedding,
    Flatten,
    Linear,
    ReLU,
    Sigmoid,
    SoftmaxCrossEntropy,
    Tanh,
    activation,
    softmax,
)
from fromzero.classic.mlp import MLP, train
from fromzero.classic.neuron import Neuron, logic_dataset
from fromzero.classic.optim import SGD, Adam
from fromzero.classic.plots import animate_decision_boundary, decision_grid, plot_history
from fromzero.errors import CorruptFileError, InputError, MissingFileError

TOL = 1e-6


def test_softmax_and_cross_entropy_known_values():
    logits = np.log(np.array([[1.0, 2.0, 3.0]]))
    assert softmax(logits) == pytest.approx(np.array([[1 / 6, 2 / 6, 3 / 6]]))
    ce = SoftmaxCrossEntropy()
    assert ce.forward(logits, np.array([2])) == pytest.approx(math.log(2))
    assert ce.backward() == pytest.approx(np.array([[1 / 6, 2 / 6, 3 / 6 - 1]]))
    # Huge logits must not overflow.
    assert softmax(np.array([1000.0, 1000.0])) == pytest.approx([0.5, 0.5])
    assert ce.forward(np.array([[1000.0, 0.0]]), np.array([1])) == pytest.approx(1000.0)
    mse = MSE()
    assert mse.forward(np.array([1.0, 3.0]), np.array([0.0, 0.0])) == pytest.approx(5.0)
    assert mse.backward() == pytest.approx([1.0, 3.0])


def test_numerical_gradient_of_a_known_function():
    x = np.array([1.0, -2.0, 3.0])
    assert numerical_gradient(lambda: float(np.sum(x**3)), x) == pytest.approx(3 * x**2, rel=1e-8)


def _layers():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 5))
    return [
        ("linear", Linear(5, 3, seed=1), x),
        ("linear-3d", Linear(5, 3, init="he", seed=2), rng.standard_normal((2, 3, 5))),
        ("sigmoid", Sigmoid(), x * 4),
        ("tanh", Tanh(), x),
        ("relu", ReLU(), x),
        ("gelu", GELU(), x * 2),
        ("flatten", Flatten(), rng.standard_normal((2, 3, 4))),
        ("embedding", Embedding(7, 3, seed=3), np.array([[1, 2, 1], [6, 0, 1]])),
    ]


@pytest.mark.parametrize("name,layer,x", _layers(), ids=[c[0] for c in _layers()])
def test_backward_matches_finite_differences(name, layer, x):
    errors = check_layer(layer, x)
    assert errors and max(errors.values()) < TOL, errors


def test_gradient_check_catches_a_wrong_backward():
    class WrongTanh(Tanh):
        def backward(self, grad):
            return grad * (1 - self.y)  # forgot to square

    x = np.random.default_rng(0).standard_normal((3, 4))
    assert check_layer(WrongTanh(), x)["input"] > 0.1


def _torch_forward(name, layer, x):
    """The same layer in torch, with the NumPy layer's weights."""
    if name.startswith("linear"):
        w = torch.tensor(layer.weight.value, requires_grad=True)
        b = torch.tensor(layer.bias.value, requires_grad=True)
        return x @ w + b, [w, b]
    if name == "embedding":
        w = torch.tensor(layer.weight.value, requires_grad=True)
        return F.embedding(x, w), [w]
    fn = {
        "sigmoid": torch.sigmoid,
        "tanh": torch.tanh,
        "relu": torch.relu,
        "gelu": lambda t: F.gelu(t, approximate="tanh"),
        "flatten": lambda t: t.reshape(t.shape[0], -1),
    }[name]
    return fn(x), []


@pytest.mark.parametrize("name,layer,x", _layers(), ids=[c[0] for c in _layers()])
def test_backward_matches_torch_autograd(name, layer, x):
    upstream = np.random.default_rng(5).standard_normal(layer.forward(x).shape)
    for p in layer.parameters():
        p.grad[...] = 0
    out = layer.forward(x)
    grad_x = layer.backward(upstream)
    tx = torch.tensor(x, requires_grad=x.dtype.kind == "f")
    t_out, t_params = _torch_forward(name, layer, tx)
    (t_out * torch.tensor(upstream)).sum().backward()
    assert relative_error(out, t_out.detach().numpy()) < TOL
    if tx.requires_grad:
        assert relative_error(grad_x, tx.grad.numpy()) < TOL
    for mine, theirs in zip(layer.parameters(), t_params):
        assert relative_error(mine.grad, theirs.grad.numpy()) < TOL


def test_losses_match_torch_and_finite_differences():
    rng = np.random.default_rng(0)
    logits, targets = rng.standard_normal((5, 4)), np.array([0, 3, 1, 1, 2])
    ce = SoftmaxCrossEntropy()
    t_logits = torch.tensor(logits, requires_grad=True)
    t_loss = F.cross_entropy(t_logits, torch.tensor(targets))
    t_loss.backward()
    assert ce.forward(logits, targets) == pytest.approx(t_loss.item(), rel=1e-12)
    assert relative_error(ce.backward(), t_logits.grad.numpy()) < TOL
    numeric = numerical_gradient(lambda: SoftmaxCrossEntropy().forward(logits, targets), logits)
    assert relative_error(ce.backward(), numeric) < TOL

    pred, target = rng.standard_normal((3, 2)), rng.standard_normal((3, 2))
    mse = MSE()
    t_pred = torch.tensor(pred, requires_grad=True)
    t_mse = F.mse_loss(t_pred, torch.tensor(target))
    t_mse.backward()
    assert mse.forward(pred, target) == pytest.approx(t_mse.item(), rel=1e-12)
    assert relative_error(mse.backward(), t_pred.grad.numpy()) < TOL


@pytest.mark.parametrize("act", ["sigmoid", "tanh", "relu", "gelu"])
def test_whole_mlp_gradient_matches_torch(act):
    rng = np.random.default_rng(1)
    model = MLP([3, 6, 5, 4], act, seed=3)
    x, y = rng.standard_normal((8, 3)), rng.integers(0, 4, 8)
    ce = SoftmaxCrossEntropy()
    loss = ce.forward(model.forward(x), y)
    model.backward(ce.backward())
    params = [torch.tensor(p.value, requires_grad=True) for p in model.parameters()]
    fn = {"sigmoid": torch.sigmoid, "tanh": torch.tanh, "relu": torch.relu, "gelu": lambda t: F.gelu(t, approximate="tanh")}[act]
    h = torch.tensor(x)
    for i in range(0, len(params), 2):
        h = h @ params[i] + params[i + 1]
        if i + 2 < len(params):
            h = fn(h)
    t_loss = F.cross_entropy(h, torch.tensor(y))
    t_loss.backward()
    assert loss == pytest.approx(t_loss.item(), rel=1e-12)
    for mine, theirs in zip(model.parameters(), params):
        assert relative_error(mine.grad, theirs.grad.numpy()) < TOL


def test_char_mlp_gradient_matches_torch():
    model = CharMLP(CharMLPConfig(vocab_size=6, context=3, embed_dim=4, hidden=7), seed=0, dtype=np.float64)
    x, y = model.windows([0, 1, 2, 3, 4, 5, 1, 2])
    assert x[0].tolist() == [6, 6, 6] and x[2].tolist() == [6, 0, 1] and x[7].tolist() == [4, 5, 1] and y[7] == 2
    ce = SoftmaxCrossEntropy()
    loss = ce.forward(model.forward(x), y)
    model.backward(ce.backward())
    emb, w1, b1, w2, b2 = (torch.tensor(p.value, requires_grad=True) for p in model.parameters())
    h = torch.tanh(F.embedding(torch.tensor(x), emb).reshape(len(x), -1) @ w1 + b1)
    t_loss = F.cross_entropy(h @ w2 + b2, torch.tensor(y))
    t_loss.backward()
    assert loss == pytest.approx(t_loss.item(), rel=1e-12)
    for mine, theirs in zip(model.parameters(), (emb, w1, b1, w2, b2)):
        assert relative_error(mine.grad, theirs.grad.numpy()) < TOL


def _run_steps(make_mine, make_torch, steps=4):
    rng = np.random.default_rng(0)
    values = [rng.standard_normal((3, 2)), rng.standard_normal(2)]
    grads = [[rng.standard_normal(v.shape) for v in values] for _ in range(steps)]
    mine = [Linear(3, 2).weight, Linear(3, 2).bias]
    for p, v in zip(mine, values):
        p.value = v.copy()
        p.grad = np.zeros_like(v)
    theirs = [torch.tensor(v, requires_grad=True) for v in values]
    opt, t_opt = make_mine(mine), make_torch(theirs)
    for step_grads in grads:
        for p, t, g in zip(mine, theirs, step_grads):
            p.grad[...] = g
            t.grad = torch.tensor(g)
        opt.step()
        t_opt.step()
    for p, t in zip(mine, theirs):
        assert relative_error(p.value, t.detach().numpy()) < 1e-12


def test_sgd_momentum_matches_torch():
    _run_steps(lambda ps: SGD(ps, lr=0.1, momentum=0.9), lambda ts: torch.optim.SGD(ts, lr=0.1, momentum=0.9))
    _run_steps(lambda ps: SGD(ps, lr=0.3), lambda ts: torch.optim.SGD(ts, lr=0.3))


def test_adam_matches_torch():
    _run_steps(lambda ps: Adam(ps, lr=0.01), lambda ts: torch.optim.Adam(ts, lr=0.01))
    _run_steps(lambda ps: Adam(ps, lr=0.1, betas=(0.8, 0.99), eps=1e-6), lambda ts: torch.optim.Adam(ts, lr=0.1, betas=(0.8, 0.99), eps=1e-6))


@pytest.mark.parametrize("gate", ["and", "or"])
def test_neuron_learns_and_or(gate):
    x, y = logic_dataset(gate)
    neuron = Neuron(seed=0)
    history = neuron.train(x, y, epochs=2000, lr=1.0)
    assert (neuron.predict(x) == y).all()
    assert history.series("loss")[-1] < history.series("loss")[0] / 10


def test_xor_needs_a_hidden_layer():
    x, y = logic_dataset("xor")
    for seed in range(3):
        neuron = Neuron(seed=seed)
        neuron.train(x, y, epochs=2000, lr=1.0)
        assert (neuron.predict(x) == y).mean() <= 0.75  # a line gets at most 3 of the 4 points right
    mlp = MLP([2, 4, 2], "tanh", seed=0)
    history = train(mlp, x, y.astype(np.int64), lr=0.05, epochs=300, batch_size=4)
    assert history.last["accuracy"] == 1.0
    assert (mlp.forward(x).argmax(axis=1) == y).all()


def test_mlp_regression_with_mse_and_sgd():
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (200, 1))
    y = np.sin(3 * x)
    model = MLP([1, 16, 1], "tanh", seed=0)
    history = train(model, x, y, loss="mse", optimizer="sgd", lr=0.1, epochs=200, batch_size=20)
    assert history.series("loss")[-1] < 0.01 < history.series("loss")[0]


def test_char_mlp_learns_and_round_trips(tmp_path):
    text = "the cat sat on the mat. " * 40
    vocab = sorted(set(text))
    ids = [vocab.index(c) for c in text]
    model = CharMLP(CharMLPConfig(len(vocab), context=8, embed_dim=8, hidden=32), seed=0)
    before = model.perplexity(ids)
    history = train_char_mlp(model, ids[:800], ids[800:], TrainConfig(epochs=8, batch_size=32, lr=1e-2))
    after = model.perplexity(ids[800:])
    assert after < 1.5 < before  # the text is deterministic given 8 characters
    assert history.last["val_loss"] == pytest.approx(math.log(after), rel=1e-5)
    assert history.last["val_accuracy"] > 0.9
    assert model.sample(ids[:8], 40, temperature=0) == ids[8:48]
    assert model.sample([], 30, seed=3) == model.sample([], 30, seed=3)
    model.save(tmp_path)
    loaded = CharMLP.load(tmp_path)
    x, _ = model.windows(ids[:50])
    assert np.array_equal(loaded.forward(x), model.forward(x))
    with pytest.raises(MissingFileError):
        CharMLP.load(tmp_path / "absent")
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(CorruptFileError):
        CharMLP.load(tmp_path)


def test_history_and_plots(tmp_path):
    history = History()
    history.add(train_loss=2.0, val_loss=2.2, accuracy=0.5)
    history.add(train_loss=1.5, val_loss=1.9, accuracy=0.75)
    loaded = History.load(history.save(tmp_path / "h.json"))
    assert loaded.records == history.records and loaded.series("val_loss") == [2.2, 1.9]
    png = plot_history(history, tmp_path / "curve.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    x, y = logic_dataset("xor")
    frames = [(e, decision_grid(lambda p: np.full(len(p), e / 3), n=10)) for e in (1, 2, 3)]
    gif = animate_decision_boundary(frames, x, y, tmp_path / "boundary.gif")
    assert gif.read_bytes()[:6] == b"GIF89a"


@pytest.mark.parametrize(
    "make",
    [
        lambda: activation("swish"),
        lambda: MLP([2, 3, 1], "swish"),
        lambda: MLP([2]),
        lambda: Linear(2, 2, init="uniform"),
        lambda: CharMLPConfig(vocab_size=5, activation="swish"),
        lambda: CharMLPConfig(vocab_size=5, context=0),
        lambda: SGD([], lr=0),
        lambda: CharMLP(CharMLPConfig(vocab_size=3)).windows([0, 3]),
        lambda: train(MLP([2, 2]), np.zeros((3, 2)), np.zeros(2, dtype=int)),
    ],
)
def test_bad_arguments_raise_input_error(make):
    with pytest.raises(InputError):
        make()
