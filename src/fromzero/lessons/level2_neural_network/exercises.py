"""Level 2 exercises, checked by ``fromzero learn check 2.NAME FILE``."""

from __future__ import annotations

from fromzero.lessons.exercises import Check

XOR_EPOCHS, XOR_LR = 400, 0.05  # the settings of step 2.2


def _xor_accuracy(hidden: int, seed: int) -> float:
    """Step 2.2's network with ``hidden`` units, trained on XOR from ``seed``: its final accuracy."""
    import numpy as np

    from fromzero.classic.mlp import MLP, train
    from fromzero.classic.neuron import logic_dataset

    x, y = logic_dataset("xor")
    model = MLP([2, hidden, 2], "tanh", seed=seed)
    history = train(model, x, y.astype(np.int64), lr=XOR_LR, epochs=XOR_EPOCHS, batch_size=4, seed=seed)
    return history.last["accuracy"]


def _mlp_parameters(sizes: list[int]) -> int:
    from fromzero.classic.mlp import MLP

    return MLP(sizes).num_params()


CHECKS = {
    "xor_hidden": Check(
        function="xor_accuracy",
        task="write xor_accuracy(hidden, seed): train step 2.2's 2-hidden-2 tanh MLP on XOR and return its accuracy",
        reference=_xor_accuracy,
        cases=lambda: [(1, 0), (1, 2), (2, 0), (2, 3), (3, 0), (8, 1)],
        same=lambda got, expected: abs(float(got) - expected) < 1e-9,
        hints=("x, y = logic_dataset('xor') from fromzero.classic.neuron; the targets are class ids: y.astype(int)",
               ("MLP([2, hidden, 2], 'tanh', seed=seed) and fromzero.classic.mlp.train(model, x, y, lr=0.05, "
                "epochs=400, batch_size=4, seed=seed)"),
               "the accuracy after the last epoch is history.last['accuracy']"),
    ),
    "mlp_parameters": Check(
        function="mlp_parameters",
        task="write mlp_parameters(sizes): how many weights and biases an MLP with these layer sizes has",
        reference=_mlp_parameters,
        cases=lambda: [([2, 4, 2],), ([2, 1, 2],), ([3, 8, 2],), ([10, 64, 64, 5],), ([784, 128, 10],)],
        same=lambda got, expected: int(got) == expected,
        hints=("a Linear layer from a inputs to b outputs has a x b weights and b biases",
               "add them up over each pair of neighbouring sizes; activations have no weights"),
    ),
}
