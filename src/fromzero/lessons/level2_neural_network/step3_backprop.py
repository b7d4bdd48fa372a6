"""Backpropagation by hand, and the check that catches a wrong gradient: finite differences."""

from __future__ import annotations

import numpy as np

from fromzero.classic.gradcheck import check_layer, numerical_gradient, relative_error
from fromzero.classic.layers import (
    GELU,
    Embedding,
    Linear,
    ReLU,
    Sigmoid,
    SoftmaxCrossEntropy,
    Tanh,
)
from fromzero.classic.mlp import MLP
from fromzero.lessons.course import Step

TITLE = "Hand-written backprop, checked"


def run(step: Step) -> None:
    step.say("""
        Training needs the gradient: for every weight, how much the loss changes when the weight moves a
        tiny bit. **Backpropagation** computes all of them in one backward sweep. Each layer knows one
        thing: given dLoss/dOutput, return dLoss/dInput (and add dLoss/dWeight to its weights' gradients).
        The chain rule does the rest. A Linear layer y = x W + b:
    """)
    step.show(Linear.backward)
    step.show(Tanh.backward)
    step.show(SoftmaxCrossEntropy.backward)

    step.say("""
        How do we know these formulas are right? Without calculus: nudge one number by a tiny eps up and
        down, measure the loss both times, and divide: (L(x + eps) - L(x - eps)) / (2 eps). That is the
        **finite-difference** gradient. It is far too slow for training (two passes per weight) but
        perfect for checking. Relative errors near 1e-8 mean the hand-written gradient is right;
        anything near 1 means a bug.
    """)
    step.show(numerical_gradient)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 5))
    for name, layer, inputs in (("Linear(5, 3)", Linear(5, 3), x), ("Sigmoid", Sigmoid(), x), ("Tanh", Tanh(), x),
                                ("ReLU", ReLU(), x), ("GELU", GELU(), x),
                                ("Embedding(7, 3)", Embedding(7, 3), rng.integers(0, 7, (4, 2)))):
        worst = max(check_layer(layer, inputs).values())
        step.figure(f"{name}: worst relative error", worst)

    step.say("Now a whole network at once: every weight of a 3-8-2 MLP under the cross-entropy loss.")
    model = MLP([3, 8, 2], "tanh", seed=0)
    inputs, targets = rng.standard_normal((6, 3)), rng.integers(0, 2, 6)
    criterion = SoftmaxCrossEntropy()

    def loss() -> float:
        return criterion.forward(model.forward(inputs), targets)

    for p in model.parameters():
        p.grad[...] = 0
    loss()
    model.backward(criterion.backward())
    errors = [relative_error(p.grad, numerical_gradient(loss, p.value)) for p in model.parameters()]
    step.figure("weights checked", model.num_params())
    step.figure("whole network: worst relative error", max(errors))

    step.say("""
        And a bug, to see the check catch it: a tanh backward that forgets to multiply by its derivative
        1 - tanh^2 (a classic mistake) and passes the gradient straight through.
    """)
    tanh, upstream = Tanh(), rng.standard_normal(x.shape)
    forgot = upstream  # what the buggy backward would return
    tanh.forward(x)
    right = tanh.backward(upstream)
    numerical = numerical_gradient(lambda: float(np.sum(tanh.forward(x) * upstream)), x)
    step.figure("correct tanh backward: relative error", relative_error(right, numerical))
    step.figure("buggy tanh backward: relative error", relative_error(forgot, numerical))
