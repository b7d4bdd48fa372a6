"""Gradient checking: compare a hand-written backward pass with central finite differences.

For a layer f and a fixed random "upstream gradient" R, the scalar L = sum(f(x) * R) has
dL/dx = backward(R). Central differences estimate the same derivative without calculus:
dL/dx_i ~= (L(x + eps e_i) - L(x - eps e_i)) / (2 eps), with error O(eps^2). In float64 with
eps = 1e-6 a correct backward agrees to about 1e-8 relative error; a wrong one is off by O(1).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from fromzero.classic.layers import Layer, Parameter


def numerical_gradient(f: Callable[[], float], x: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """d f() / d x by central differences, perturbing ``x`` in place one element at a time."""
    grad = np.zeros_like(x, dtype=np.float64)
    flat, gflat = x.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        plus = f()
        flat[i] = old - eps
        minus = f()
        flat[i] = old
        gflat[i] = (plus - minus) / (2 * eps)
    return grad


def relative_error(a: np.ndarray, b: np.ndarray) -> float:
    """max |a - b| / max(|a| + |b|), 0 when both are zero: scale-free, so one threshold fits all."""
    scale = float(np.max(np.abs(a) + np.abs(b)))
    return float(np.max(np.abs(a - b)) / scale) if scale > 0 else 0.0


def check_layer(layer: Layer, x: np.ndarray, seed: int = 0, eps: float = 1e-6) -> dict[str, float]:
    """Relative error of ``layer.backward`` for the input (if float) and for every parameter.

    Returns ``{"input": err, "weight": err, "bias": err, ...}`` (parameters by attribute
    name); use float64 arrays.
    """
    out = layer.forward(x)
    upstream = np.random.default_rng(seed).standard_normal(out.shape)

    def loss() -> float:
        return float(np.sum(layer.forward(x) * upstream))

    for p in layer.parameters():
        p.grad[...] = 0
    layer.forward(x)
    grad_x = layer.backward(upstream)
    errors = {}
    if np.issubdtype(x.dtype, np.floating):
        errors["input"] = relative_error(grad_x, numerical_gradient(loss, x, eps))
    for name, p in vars(layer).items():
        if isinstance(p, Parameter):
            errors[name] = relative_error(p.grad, numerical_gradient(loss, p.value, eps))
    return errors
