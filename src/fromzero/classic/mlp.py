"""A multi-layer perceptron (any layer sizes) and a mini-batch training loop, all in NumPy.

``MLP([2, 8, 2])`` is Linear(2, 8) -> activation -> Linear(8, 2). The forward pass runs the
layers in order; the backward pass runs them in reverse, each turning dLoss/dOutput into
dLoss/dInput — that is all backpropagation is.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from fromzero.classic.history import History
from fromzero.classic.layers import ACTIVATIONS, Layer, Linear, Parameter, activation, loss_function
from fromzero.classic.optim import make_optimizer
from fromzero.errors import InputError


class MLP:
    """Linear layers with an activation between them (none after the last: it gives logits)."""

    def __init__(
        self,
        sizes: list[int],
        activation_name: str = "tanh",
        init: str | None = None,
        seed: int = 0,
        dtype=np.float64,
    ):
        if len(sizes) < 2 or any(int(s) < 1 for s in sizes):
            raise InputError(f"an MLP needs at least two layer sizes, all >= 1; got {sizes}")
        if activation_name not in ACTIVATIONS:
            raise InputError(f"unknown activation {activation_name!r}; choose one of {', '.join(ACTIVATIONS)}")
        init = init or ("he" if activation_name == "relu" else "xavier")
        self.sizes = list(sizes)
        self.layers: list[Layer] = []
        for i, (fan_in, fan_out) in enumerate(zip(sizes, sizes[1:])):
            if i > 0:
                self.layers.append(activation(activation_name))
            self.layers.append(Linear(fan_in, fan_out, init=init, seed=seed + i, dtype=dtype))

    def forward(self, x: np.ndarray) -> np.ndarray:
        for layer in self.layers:
            x = layer.forward(x)
        return x

    __call__ = forward

    def backward(self, grad: np.ndarray) -> np.ndarray:
        for layer in reversed(self.layers):
            grad = layer.backward(grad)
        return grad

    def parameters(self) -> list[Parameter]:
        return [p for layer in self.layers for p in layer.parameters()]

    def num_params(self) -> int:
        return sum(p.value.size for p in self.parameters())


def accuracy(outputs: np.ndarray, targets: np.ndarray) -> float:
    """Share of correct predictions: argmax for class ids, threshold 0.5 for 0/1 targets."""
    if targets.ndim == 1 and outputs.ndim == 2 and outputs.shape[1] > 1:
        return float((outputs.argmax(axis=1) == targets).mean())
    return float(((outputs >= 0.5) == (targets >= 0.5)).mean())


def train(
    model: MLP,
    x: np.ndarray,
    y: np.ndarray,
    loss: str = "cross-entropy",
    optimizer: str = "adam",
    lr: float = 0.01,
    epochs: int = 100,
    batch_size: int = 32,
    seed: int = 0,
    on_epoch: Callable[[int, MLP], None] | None = None,
) -> History:
    """Mini-batch training; returns the loss and accuracy (on all of ``x``) after each epoch.

    ``loss`` is ``cross-entropy`` (``y`` holds class ids) or ``mse`` (``y`` holds targets of
    the output's shape). ``on_epoch(epoch, model)`` is called after each epoch, e.g. to take
    snapshots for an animation.
    """
    if len(x) == 0 or len(x) != len(y):
        raise InputError(f"need as many targets as inputs (and at least one); got {len(x)} and {len(y)}")
    criterion = loss_function(loss)
    opt = make_optimizer(optimizer, model.parameters(), lr)
    rng = np.random.default_rng(seed)
    history = History()
    for epoch in range(1, epochs + 1):
        order = rng.permutation(len(x))
        for start in range(0, len(x), batch_size):
            idx = order[start : start + batch_size]
            opt.zero_grad()
            criterion.forward(model.forward(x[idx]), y[idx])
            model.backward(criterion.backward())
            opt.step()
        outputs = model.forward(x)
        history.add(loss=criterion.forward(outputs, y), accuracy=accuracy(outputs, y))
        if on_epoch is not None:
            on_epoch(epoch, model)
    return history
