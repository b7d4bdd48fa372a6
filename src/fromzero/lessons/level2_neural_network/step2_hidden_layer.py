"""A hidden layer learns XOR: two-layer network, and an animation of its decision boundary."""

from __future__ import annotations

import numpy as np

from fromzero.classic.layers import softmax
from fromzero.classic.mlp import MLP, train
from fromzero.classic.neuron import logic_dataset
from fromzero.classic.plots import (
    animate_decision_boundary,
    decision_grid,
    plot_decision_boundaries,
)
from fromzero.lessons.course import Step

TITLE = "A hidden layer learns XOR"
HIDDEN = 4


def run(step: Step) -> None:
    step.say(f"""
        Put a layer of {HIDDEN} neurons (a *hidden layer*) between the inputs and the output. Each hidden
        neuron draws its own line; the output combines them, so the network can carve the plane into
        regions, not just two half-planes. The layers are Linear -> tanh -> Linear, and the output gives
        two scores (for class 0 and class 1) that softmax turns into probabilities:
    """)
    step.show(MLP.forward)
    x, y = logic_dataset("xor")
    model = MLP([2, HIDDEN, 2], "tanh", seed=0)
    step.figure("parameters: (2 x 4 + 4) + (4 x 2 + 2)", model.num_params())
    epochs = step.pick(200, 400)
    frames: list[tuple[int, np.ndarray]] = []

    def snapshot(epoch: int, net: MLP) -> None:
        if epoch == 1 or epoch % max(1, epochs // step.pick(10, 40)) == 0:
            frames.append((epoch, decision_grid(lambda points: softmax(net.forward(points))[:, 1], n=step.pick(30, 60))))

    history = train(model, x, y.astype(np.int64), lr=0.05, epochs=epochs, batch_size=4, seed=0, on_epoch=snapshot)
    step.show(train)
    step.figure("XOR accuracy after training", f"{history.last['accuracy']:.0%}")
    step.figure("loss after training", round(history.last["loss"], 4), "nats")
    for point, p in zip(x, softmax(model.forward(x))[:, 1]):
        step.figure(f"P(1) for ({point[0]:.0f}, {point[1]:.0f})", round(float(p), 3))
    step.saved(animate_decision_boundary(frames, x, y, step.picture("2_2_xor.gif")))
    step.saved(plot_decision_boundaries([("start (epoch 1)", frames[0][1], y), (f"epoch {epochs}", frames[-1][1], y)],
                                        x, step.picture("2_2_xor.png")))

    step.say("""
        What did the hidden layer do? It moved the four points: in the space of the hidden neurons'
        outputs they are no longer arranged as XOR, and one straight line (the output layer) separates
        them. Here are the hidden values (after tanh) of each input:
    """)
    hidden = model.layers[1].forward(model.layers[0].forward(x))
    for point, h in zip(x, hidden):
        step.figure(f"hidden layer for ({point[0]:.0f}, {point[1]:.0f})", " ".join(f"{v:+.2f}" for v in h))
    step.say("Open the GIF to watch the boundary bend as it learns.")
