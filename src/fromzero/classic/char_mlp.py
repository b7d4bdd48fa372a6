"""A character-level language model in NumPy: the MLP of Bengio et al. (2003).

To predict the next character, take the ``k`` previous characters, look up a learned vector
(embedding) for each, join them, pass them through one hidden layer and a softmax over the
vocabulary::

    ids (B, k) -> Embedding -> (B, k, d) -> Flatten -> (B, k d) -> Linear -> act -> Linear -> logits (B, V)

Positions at the start of a text, where fewer than ``k`` characters precede, are filled with
an extra "padding" id (``vocab_size``), so every character of a text is predicted — the same
positions an n-gram model scores, which makes their perplexities comparable.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from safetensors.numpy import load_file, save_file
from threadpoolctl import threadpool_limits

from fromzero.classic.history import History
from fromzero.classic.layers import Embedding, Flatten, Linear, Parameter, SoftmaxCrossEntropy, activation, log_softmax
from fromzero.classic.optim import Adam
from fromzero.errors import CorruptFileError, InputError, MissingFileError
from fromzero.files import atomic_path, write_json


@dataclass
class CharMLPConfig:
    vocab_size: int
    context: int = 6  # k: how many previous characters the model sees
    embed_dim: int = 32  # d: size of each character's vector
    hidden: int = 512  # units in the hidden layer
    activation: str = "tanh"

    def __post_init__(self) -> None:
        for name in ("vocab_size", "context", "embed_dim", "hidden"):
            if getattr(self, name) < 1:
                raise InputError(f"char-MLP {name} must be >= 1, got {getattr(self, name)}")
        activation(self.activation)  # raises InputError for an unknown name


class CharMLP:
    def __init__(self, config: CharMLPConfig, seed: int = 0, dtype=np.float32):
        self.config = config
        c = config
        self.pad_id = c.vocab_size
        self.layers = [
            Embedding(c.vocab_size + 1, c.embed_dim, seed=seed, dtype=dtype),
            Flatten(),
            Linear(c.context * c.embed_dim, c.hidden, seed=seed + 1, dtype=dtype),
            activation(c.activation),
            Linear(c.hidden, c.vocab_size, seed=seed + 2, dtype=dtype),
        ]

    def parameters(self) -> list[Parameter]:
        return [p for layer in self.layers for p in layer.parameters()]

    def num_params(self) -> int:
        return sum(p.value.size for p in self.parameters())

    def forward(self, contexts: np.ndarray) -> np.ndarray:
        x = contexts
        for layer in self.layers:
            x = layer.forward(x)
        return x

    def backward(self, grad: np.ndarray) -> None:
        for layer in reversed(self.layers):
            grad = layer.backward(grad)

    def windows(self, ids: list[int] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Inputs (N, k) and targets (N,): row i holds the k ids before ``ids[i]``, left-padded."""
        ids = np.asarray(ids, dtype=np.int64)
        if ids.size == 0:
            raise InputError("need at least one token")
        if ids.min() < 0 or ids.max() >= self.config.vocab_size:
            raise InputError(f"token ids must be in [0, {self.config.vocab_size}), got {ids.min()}..{ids.max()}")
        k = self.config.context
        padded = np.concatenate([np.full(k, self.pad_id, dtype=np.int64), ids])
        rows = np.lib.stride_tricks.sliding_window_view(padded, k)[: len(ids)]
        return np.ascontiguousarray(rows), ids

    def evaluate(self, ids: list[int] | np.ndarray, batch_size: int = 4096) -> tuple[float, float]:
        """(mean cross-entropy in nats per token, share of tokens that are the top prediction)."""
        x, y = self.windows(ids)
        total, correct = 0.0, 0
        for start in range(0, len(x), batch_size):
            logp = log_softmax(self.forward(x[start : start + batch_size]).astype(np.float64))
            targets = y[start : start + batch_size]
            total -= logp[np.arange(len(logp)), targets].sum()
            correct += int((logp.argmax(axis=1) == targets).sum())
        return float(total / len(x)), correct / len(x)

    def loss(self, ids: list[int] | np.ndarray) -> float:
        """Mean cross-entropy (nats per token) of predicting every id of ``ids``."""
        return self.evaluate(ids)[0]

    def perplexity(self, ids: list[int] | np.ndarray) -> float:
        """exp(mean cross-entropy): per character when the ids are characters."""
        return math.exp(self.loss(ids))

    def sample(self, prompt: list[int], n: int, temperature: float = 1.0, seed: int | None = None) -> list[int]:
        """``n`` new ids after ``prompt``; ``temperature=0`` always picks the likeliest id."""
        if n < 0:
            raise InputError(f"number of ids to sample must be >= 0, got {n}")
        if temperature < 0:
            raise InputError(f"temperature must be >= 0, got {temperature}")
        rng = np.random.default_rng(seed)
        k = self.config.context
        history = [self.pad_id] * k + list(prompt)
        out = []
        for _ in range(n):
            logits = self.forward(np.array([history[-k:]]))[0].astype(np.float64)
            if temperature == 0:
                token = int(logits.argmax())
            else:
                probs = np.exp(log_softmax(logits / temperature))
                token = int(rng.choice(len(probs), p=probs / probs.sum()))
            history.append(token)
            out.append(token)
        return out

    # ------------------------------------------------------------------ saving
    def save(self, directory: str | Path) -> None:
        """config.json + model.safetensors (one tensor per parameter, in layer order)."""
        directory = Path(directory)
        write_json(directory / "config.json", {"kind": "fromzero-char-mlp", **asdict(self.config)})
        tensors = {f"p{i}": p.value for i, p in enumerate(self.parameters())}
        with atomic_path(directory / "model.safetensors") as tmp:
            save_file(tensors, str(tmp))

    @classmethod
    def load(cls, directory: str | Path) -> CharMLP:
        directory = Path(directory)
        config_path, weights_path = directory / "config.json", directory / "model.safetensors"
        if not config_path.is_file() or not weights_path.is_file():
            raise MissingFileError(f"no char-MLP in {directory}; train one with `fromzero numpy-net train`")
        try:
            raw = json.loads(config_path.read_text(encoding="utf-8"))
            raw.pop("kind")
            config = CharMLPConfig(**raw)
            tensors = load_file(str(weights_path))
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise CorruptFileError(f"{directory} does not hold a valid char-MLP: {err!r}") from err
        model = cls(config, dtype=tensors["p0"].dtype)
        for i, p in enumerate(model.parameters()):
            if f"p{i}" not in tensors or tensors[f"p{i}"].shape != p.value.shape:
                raise CorruptFileError(f"{weights_path} does not match {config_path}")
            p.value[...] = tensors[f"p{i}"]
        return model


@dataclass
class TrainConfig:
    epochs: int = 5
    batch_size: int = 128
    lr: float = 2e-3
    seed: int = 0
    # Matrices this small gain little from several BLAS threads, and when other programs share
    # the cores, spinning threads make each step many times slower; None keeps NumPy's default.
    blas_threads: int | None = 1

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise InputError(f"char-MLP training needs {name} >= 1, got {getattr(self, name)}")


def train_char_mlp(
    model: CharMLP,
    train_ids: list[int] | np.ndarray,
    val_ids: list[int] | np.ndarray | None,
    config: TrainConfig,
    on_step: Callable[[int, int], None] | None = None,
) -> History:
    """Adam on shuffled mini-batches; records train and val loss (nats/char) each epoch.

    ``train_loss`` is the mean over the epoch's batches, measured as the model learned (so it
    lags the end-of-epoch model); ``val_loss`` is measured after the epoch.

    The learning rate decays linearly to 10% over training, which settles the last epochs.
    ``on_step(step, total_steps)`` reports progress.
    """
    with threadpool_limits(config.blas_threads, user_api="blas"):
        return _train(model, train_ids, val_ids, config, on_step)


def _train(model, train_ids, val_ids, config: TrainConfig, on_step) -> History:
    x, y = model.windows(train_ids)
    rng = np.random.default_rng(config.seed)
    opt = Adam(model.parameters(), lr=config.lr)
    criterion = SoftmaxCrossEntropy()
    steps_per_epoch = math.ceil(len(x) / config.batch_size)
    total = steps_per_epoch * config.epochs
    history = History()
    step = 0
    for _ in range(config.epochs):
        order = rng.permutation(len(x))
        running = 0.0
        for start in range(0, len(x), config.batch_size):
            idx = order[start : start + config.batch_size]
            opt.lr = config.lr * (1 - 0.9 * step / total)
            opt.zero_grad()
            running += criterion.forward(model.forward(x[idx]), y[idx]) * len(idx)
            model.backward(criterion.backward())
            opt.step()
            step += 1
            if on_step is not None:
                on_step(step, total)
        record = {"train_loss": running / len(x)}
        if val_ids is not None and len(val_ids):
            record["val_loss"], record["val_accuracy"] = model.evaluate(val_ids)
        history.add(**record)
    return history
