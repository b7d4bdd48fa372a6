"""One neuron: it learns AND and OR, and can never learn XOR."""

from __future__ import annotations

import math

import numpy as np

from fromzero.classic.neuron import Neuron, logic_dataset
from fromzero.classic.plots import decision_grid, plot_decision_boundaries
from fromzero.lessons.course import Step

TITLE = "One neuron: AND, OR, and why XOR fails"


def run(step: Step) -> None:
    step.say("""
        A **neuron** multiplies each input by a weight, adds them up with a bias, and squashes the sum
        into a probability with the sigmoid: p = sigmoid(w1 x1 + w2 x2 + b). Training nudges w and b
        downhill on the loss, a little at a time (gradient descent). Here is all of it:
    """)
    step.show(Neuron)
    epochs = step.pick(500, 2000)
    panels = []
    for gate in ("and", "or", "xor"):
        x, y = logic_dataset(gate)
        neuron = Neuron(seed=0)
        history = neuron.train(x, y, epochs=epochs, lr=1.0)
        step.figure(f"{gate.upper()}: accuracy after {epochs} steps", f"{history.last['accuracy']:.0%}")
        step.figure(f"{gate.upper()}: loss", round(history.last["loss"], 4), "nats")
        panels.append((f"one neuron: {gate.upper()}", decision_grid(neuron.forward), y))
    step.figure("ln 2", round(math.log(2), 4), "nats")
    step.figure("XOR: the neuron's P(1) on the four inputs", " ".join(f"{p:.3f}" for p in neuron.forward(x)))
    path = plot_decision_boundaries(panels, x, step.picture("2_1_neuron.png"))
    step.saved(path)

    step.say("""
        AND and OR are learned perfectly. On XOR the loss is stuck at ln 2, the loss of answering 0.5
        everywhere: the neuron found nothing better than not deciding. Why? The neuron says 1 on one side of the straight line
        w1 x1 + w2 x2 + b = 0 and 0 on the other. XOR wants (0,1) and (1,0) on one side and (0,0) and
        (1,1) on the other, and no straight line does that. Let us not take it on trust: try many lines
        and keep the best.
    """)
    x, y = logic_dataset("xor")
    rng = np.random.default_rng(0)
    probe = Neuron(seed=0)
    best = 0.0
    for _ in range(step.pick(2_000, 20_000)):
        probe.w, probe.b = rng.normal(0, 3, 2), float(rng.normal(0, 3))
        best = max(best, float((probe.predict(x) == y).mean()))
    step.figure("XOR: best accuracy of any line tried", f"{best:.0%}")
    step.say("""
        Three of four is the best a line can do. Two lines could do it (one cutting off (0,0), one cutting
        off (1,1)), and that is what a **hidden layer** gives us: next step.
    """)
