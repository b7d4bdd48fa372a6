"""Neural-network layers in NumPy, each with a hand-written backward pass.

Every layer has ``forward(x)``, which remembers what backward needs, and ``backward(grad)``,
which takes dLoss/dOutput and returns dLoss/dInput while *adding* dLoss/dParameter into each
``Parameter.grad`` (so call ``zero_grad`` between steps, as in PyTorch). Arrays keep the dtype
they are given: float64 for gradient checks, float32 for speed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from fromzero.errors import InputError


@dataclass
class Parameter:
    """A trainable array and the gradient of the loss with respect to it."""

    value: np.ndarray
    grad: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.grad = np.zeros_like(self.value)


class Layer:
    """Base class: a layer without parameters unless it overrides ``parameters``."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def backward(self, grad: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def parameters(self) -> list[Parameter]:
        return []

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.forward(x)


def init_weight(fan_in: int, fan_out: int, init: str, rng: np.random.Generator, dtype) -> np.ndarray:
    """Xavier/Glorot (for tanh, sigmoid) or He/Kaiming (for ReLU) normal initialisation.

    Both keep the variance of activations roughly constant from layer to layer:
    Xavier uses Var = 2 / (fan_in + fan_out), He uses Var = 2 / fan_in (ReLU zeroes half).
    """
    if init == "xavier":
        std = np.sqrt(2.0 / (fan_in + fan_out))
    elif init == "he":
        std = np.sqrt(2.0 / fan_in)
    else:
        raise InputError(f"unknown initialisation {init!r}; choose xavier or he")
    return (rng.standard_normal((fan_in, fan_out)) * std).astype(dtype)


class Linear(Layer):
    """y = x W + b, for inputs of shape (..., in_features)."""

    def __init__(self, in_features: int, out_features: int, init: str = "xavier", seed: int = 0, dtype=np.float64):
        rng = np.random.default_rng(seed)
        self.weight = Parameter(init_weight(in_features, out_features, init, rng, dtype))
        self.bias = Parameter(np.zeros(out_features, dtype=dtype))

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.x = x
        return x @ self.weight.value + self.bias.value

    def backward(self, grad: np.ndarray) -> np.ndarray:
        x2 = self.x.reshape(-1, self.x.shape[-1])
        g2 = grad.reshape(-1, grad.shape[-1])
        self.weight.grad += x2.T @ g2  # dL/dW = x^T dL/dy
        self.bias.grad += g2.sum(axis=0)  # b is added to every row
        return grad @ self.weight.value.T  # dL/dx = dL/dy W^T

    def parameters(self) -> list[Parameter]:
        return [self.weight, self.bias]


class Sigmoid(Layer):
    """sigma(x) = 1 / (1 + e^-x); its derivative is sigma (1 - sigma)."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        # Split by sign so that exp never overflows.
        e = np.exp(-np.abs(x))
        self.y = np.where(x >= 0, 1 / (1 + e), e / (1 + e))
        return self.y

    def backward(self, grad: np.ndarray) -> np.ndarray:
        return grad * self.y * (1 - self.y)


class Tanh(Layer):
    """tanh(x); its derivative is 1 - tanh^2."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.y = np.tanh(x)
        return self.y

    def backward(self, grad: np.ndarray) -> np.ndarray:
        return grad * (1 - self.y**2)


class ReLU(Layer):
    """max(0, x); the gradient passes where x > 0 and is 0 elsewhere."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.mask = x > 0
        return x * self.mask

    def backward(self, grad: np.ndarray) -> np.ndarray:
        return grad * self.mask


class GELU(Layer):
    """GELU with the tanh approximation used by GPT-2 (``torch.nn.GELU(approximate="tanh")``).

    gelu(x) = 0.5 x (1 + tanh(u)), u = sqrt(2/pi) (x + 0.044715 x^3).
    """

    C = np.sqrt(2 / np.pi)

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.x = x
        self.t = np.tanh(self.C * (x + 0.044715 * x**3))
        return 0.5 * x * (1 + self.t)

    def backward(self, grad: np.ndarray) -> np.ndarray:
        x, t = self.x, self.t
        du_dx = self.C * (1 + 3 * 0.044715 * x**2)
        return grad * (0.5 * (1 + t) + 0.5 * x * (1 - t**2) * du_dx)


ACTIVATIONS = {"sigmoid": Sigmoid, "tanh": Tanh, "relu": ReLU, "gelu": GELU}


def activation(name: str) -> Layer:
    """A fresh activation layer by name: sigmoid, tanh, relu or gelu."""
    if name not in ACTIVATIONS:
        raise InputError(f"unknown activation {name!r}; choose one of {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


class Embedding(Layer):
    """A lookup table: token id -> learned vector. Input ids (...), output (..., dim)."""

    def __init__(self, num_embeddings: int, dim: int, seed: int = 0, dtype=np.float64):
        rng = np.random.default_rng(seed)
        self.weight = Parameter(rng.standard_normal((num_embeddings, dim)).astype(dtype))

    def forward(self, ids: np.ndarray) -> np.ndarray:
        self.ids = ids
        return self.weight.value[ids]

    def backward(self, grad: np.ndarray) -> None:
        # A row used several times collects the gradient of every use (np.add.at does not
        # overwrite repeated indices the way `grad[ids] += ...` would).
        np.add.at(self.weight.grad, self.ids.reshape(-1), grad.reshape(-1, grad.shape[-1]))
        return None  # ids are integers: there is no gradient with respect to them

    def parameters(self) -> list[Parameter]:
        return [self.weight]


class Flatten(Layer):
    """(B, d1, d2, ...) -> (B, d1 * d2 * ...): joins the k context embeddings into one vector."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.shape = x.shape
        return x.reshape(x.shape[0], -1)

    def backward(self, grad: np.ndarray) -> np.ndarray:
        return grad.reshape(self.shape)


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """log softmax over the last axis, shifted by the max so exp never overflows."""
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def softmax(logits: np.ndarray) -> np.ndarray:
    """exp(z_i) / sum_j exp(z_j) over the last axis."""
    return np.exp(log_softmax(logits))


class SoftmaxCrossEntropy:
    """Mean of -log softmax(logits)[target] over the batch.

    Softmax and cross-entropy are fused because their joint gradient is simply
    (softmax(logits) - one_hot(target)) / batch_size.
    """

    def forward(self, logits: np.ndarray, targets: np.ndarray) -> float:
        self.logp = log_softmax(logits)
        self.targets = targets
        return float(-self.logp[np.arange(len(targets)), targets].mean())

    def backward(self) -> np.ndarray:
        grad = np.exp(self.logp)
        grad[np.arange(len(self.targets)), self.targets] -= 1
        return grad / len(self.targets)


class MSE:
    """Mean squared error over every element; gradient 2 (prediction - target) / count."""

    def forward(self, predictions: np.ndarray, targets: np.ndarray) -> float:
        self.diff = predictions - targets
        return float((self.diff**2).mean())

    def backward(self) -> np.ndarray:
        return 2 * self.diff / self.diff.size


LOSSES = {"cross-entropy": SoftmaxCrossEntropy, "mse": MSE}


def loss_function(name: str):
    """A fresh loss by name: cross-entropy (softmax + CE on class ids) or mse."""
    if name not in LOSSES:
        raise InputError(f"unknown loss {name!r}; choose one of {', '.join(LOSSES)}")
    return LOSSES[name]()
