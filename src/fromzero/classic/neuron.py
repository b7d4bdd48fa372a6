"""One artificial neuron: a weighted sum of the inputs squashed by a sigmoid.

It learns AND and OR, which a single straight line separates, but never XOR: no line puts
(0,1) and (1,0) on one side and (0,0) and (1,1) on the other. That is why networks need a
hidden layer (see :mod:`fromzero.classic.mlp`).
"""

from __future__ import annotations

import numpy as np

from fromzero.classic.history import History
from fromzero.classic.layers import Sigmoid

TRUTH_TABLES = {
    "and": [0, 0, 0, 1],
    "or": [0, 1, 1, 1],
    "xor": [0, 1, 1, 0],
}
INPUTS = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float64)


def logic_dataset(name: str) -> tuple[np.ndarray, np.ndarray]:
    """The four inputs of a two-input logic gate and its outputs (``and``, ``or``, ``xor``)."""
    return INPUTS.copy(), np.array(TRUTH_TABLES[name], dtype=np.float64)


class Neuron:
    """p = sigmoid(x . w + b), trained by gradient descent on the binary cross-entropy.

    For the loss L = -mean(y log p + (1 - y) log(1 - p)) the gradient with respect to the
    pre-activation z is simply (p - y) / N, hence dL/dw = x^T (p - y) / N and dL/db = mean(p - y).
    """

    def __init__(self, n_inputs: int = 2, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.w = rng.normal(0, 0.5, n_inputs)
        self.b = 0.0
        self._sigmoid = Sigmoid()

    def forward(self, x: np.ndarray) -> np.ndarray:
        return self._sigmoid(x @ self.w + self.b)

    def predict(self, x: np.ndarray) -> np.ndarray:
        return (self.forward(x) >= 0.5).astype(np.float64)

    def train(self, x: np.ndarray, y: np.ndarray, epochs: int = 2000, lr: float = 1.0) -> History:
        history = History()
        for _ in range(epochs):
            p = self.forward(x)
            eps = 1e-12
            loss = -np.mean(y * np.log(p + eps) + (1 - y) * np.log(1 - p + eps))
            dz = (p - y) / len(y)
            self.w -= lr * (x.T @ dz)
            self.b -= lr * dz.sum()
            history.add(loss=float(loss), accuracy=float(((p >= 0.5) == y).mean()))
        return history
