"""Optimisers in NumPy: SGD with momentum and Adam, step for step the same as ``torch.optim``.

An optimiser holds the model's ``Parameter`` objects and, on ``step()``, moves each value
against its gradient. ``zero_grad()`` clears the gradients, which the layers accumulate.
"""

from __future__ import annotations

import numpy as np

from fromzero.classic.layers import Parameter
from fromzero.errors import InputError


class Optimizer:
    def __init__(self, params: list[Parameter], lr: float):
        if lr <= 0:
            raise InputError(f"learning rate must be > 0, got {lr}")
        self.params = list(params)
        self.lr = lr

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad[...] = 0

    def step(self) -> None:
        raise NotImplementedError


class SGD(Optimizer):
    """Stochastic gradient descent with (heavy-ball) momentum.

    velocity = momentum * velocity + grad;  value -= lr * velocity.
    With momentum 0 this is plain gradient descent; with 0.9 the step follows a running
    average of recent gradients, which smooths noisy mini-batch directions.
    """

    def __init__(self, params: list[Parameter], lr: float = 0.1, momentum: float = 0.0):
        super().__init__(params, lr)
        if not 0 <= momentum < 1:
            raise InputError(f"momentum must be in [0, 1), got {momentum}")
        self.momentum = momentum
        self.velocity = [np.zeros_like(p.value) for p in self.params]

    def step(self) -> None:
        for p, v in zip(self.params, self.velocity):
            v *= self.momentum
            v += p.grad
            p.value -= self.lr * v


class Adam(Optimizer):
    """Adam (Kingma & Ba, 2015): per-parameter step sizes from running gradient moments.

    m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;
    value -= lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps).
    The bias corrections undo the zero initialisation of m and v in the first steps.
    """

    def __init__(
        self,
        params: list[Parameter],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ):
        super().__init__(params, lr)
        self.b1, self.b2 = betas
        self.eps = eps
        self.t = 0
        self.m = [np.zeros_like(p.value) for p in self.params]
        self.v = [np.zeros_like(p.value) for p in self.params]

    def step(self) -> None:
        self.t += 1
        c1 = 1 - self.b1**self.t
        c2 = 1 - self.b2**self.t
        for p, m, v in zip(self.params, self.m, self.v):
            m *= self.b1
            m += (1 - self.b1) * p.grad
            v *= self.b2
            v += (1 - self.b2) * p.grad**2
            p.value -= (self.lr / c1) * m / (np.sqrt(v) / np.sqrt(c2) + self.eps)


OPTIMIZERS = {"sgd": SGD, "adam": Adam}


def make_optimizer(name: str, params: list[Parameter], lr: float, momentum: float = 0.9) -> Optimizer:
    """``sgd`` (with ``momentum``) or ``adam`` by name."""
    if name == "sgd":
        return SGD(params, lr=lr, momentum=momentum)
    if name == "adam":
        return Adam(params, lr=lr)
    raise InputError(f"unknown optimiser {name!r}; choose one of {', '.join(OPTIMIZERS)}")
