"""N-gram language models: "AI is counting".

An n-gram model predicts the next token from the previous ``n - 1`` tokens by counting how often
each continuation followed that context in the training text. Everything here is plain Python
(dicts of counts), so a learner can print any table and check it by hand.

Tokens are any hashable values. A ``str`` is read as a sequence of characters (a character
model); a list of ids from a fromzero tokenizer (``tok.encode(text)``) gives a token model.
Only ``str`` and ``int`` tokens can be saved to JSON.

Text is treated as one continuous stream, without start/end markers: the token at position ``i``
is predicted from the ``min(i, n - 1)`` tokens before it. A shorter context is scored with the
formula of the matching lower-order model, so the first tokens of a text are scored too.

Smoothing (how probability is given to continuations never seen after a context):

``none``
    Maximum likelihood: ``P(w | h) = c(h w) / c(h)``. Unseen events get 0, so perplexity is
    infinite as soon as the evaluated text holds one; a context never seen gives 0 everywhere.
``add-k``
    ``P(w | h) = (c(h w) + k) / (c(h) + k V)`` with ``V`` the vocabulary size (``k = 1``: Laplace).
``kneser-ney``
    Interpolated Kneser–Ney as in Chen & Goodman (1998, "An empirical study of smoothing
    techniques", eq. 26 with one discount per order). For the highest order evaluated
    (``m = len(h) + 1``), with raw counts ``c``::

        P(w | h) = max(c(h w) - D, 0) / c(h)  +  D * N1+(h .) / c(h) * P_lower(w | h[1:])

    Lower orders replace the raw count with the *continuation count*
    ``N1+(. h w)`` = the number of distinct tokens seen just before ``h w`` (how many contexts a
    continuation completes, not how often it occurs), with ``N1+(. h .) = sum_w N1+(. h w)``
    as the denominator. ``N1+(h .)`` is the number of distinct ``w`` with a non-zero count.
    The recursion ends at the uniform distribution ``1 / V``. When the context was never
    seen (zero denominator) all the mass goes to the lower order. Each order ``m`` and each
    kind of count has its own discount ``D = n1 / (n1 + 2 n2)``, where ``n1`` and ``n2`` are the
    numbers of ``m``-grams whose count is exactly 1 and exactly 2 (0.5 when n1 is 0), unless a
    fixed ``discount`` is given. Every distribution sums to 1 over the vocabulary.
"""

from __future__ import annotations

import math
import os
import random
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Hashable, Sequence

from fromzero.errors import CorruptFileError, InputError
from fromzero.files import read_json, write_json

SMOOTHINGS = ("none", "add-k", "kneser-ney")
FORMAT = "fromzero-ngram/1"
# What one distinct m-gram costs at the peak of a fit (its count, its entry in the context
# tables, their tuple keys): about 650 + 30 m bytes, fitted to fits of a random text, where
# every m-gram is new; the text itself, as a list of tokens, takes 8 bytes a token (16 with room).
_BYTES_PER_GRAM, _BYTES_PER_TOKEN, _BYTES_PER_TEXT_TOKEN = 650, 30, 16

Token = Hashable
Context = tuple


@dataclass
class Evaluation:
    """Result of scoring a text: perplexity plus what made it infinite, if anything."""

    perplexity: float
    cross_entropy: float  # mean negative log-likelihood in nats per token
    n_tokens: int
    n_zero: int  # tokens that got probability 0 (unseen events under an unsmoothed model)
    first_zero: tuple[Context, Token] | None  # (context, token) of the first such event
    n_unknown: int = 0  # of the n_zero, tokens outside the model's vocabulary

    def explain(self) -> str:
        """One line a person can read; says why the perplexity is infinite when it is."""
        if self.n_zero == 0:
            return f"perplexity {self.perplexity:.3f} over {self.n_tokens:,} tokens"
        context, token = self.first_zero
        if self.n_unknown == self.n_zero:
            fix = "they are not in the model's vocabulary (train it on text that includes them)"
        else:
            fix = "use add-k or kneser-ney smoothing"
        return (
            f"perplexity inf: {self.n_zero:,} of {self.n_tokens:,} tokens had probability 0 "
            f"(first: {token!r} after {context!r}); {fix}"
        )


def estimate_fit_bytes(order: int, n_tokens: int, vocab_size: int) -> int:
    """An upper bound on the memory :meth:`NGramModel.fit` needs for ``n_tokens`` of text.

    A text holds at most ``min(n_tokens - m + 1, vocab_size ** m)`` distinct m-grams. Beyond
    the first few orders nearly every m-gram of a text is new, so the tables grow by about the
    text's length per order: an order-50 character model of the 350 KB stories would need
    some 20 GB.
    """
    grams = (min(max(n_tokens - m + 1, 0), vocab_size**m) for m in range(1, order + 1))
    tables = sum(count * (_BYTES_PER_GRAM + _BYTES_PER_TOKEN * m) for m, count in enumerate(grams, start=1))
    return n_tokens * _BYTES_PER_TEXT_TOKEN + tables


def memory_budget() -> int:
    """The most memory a fit may take: half of this machine's memory (8 GiB if it cannot be read)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2
    except (AttributeError, ValueError, OSError):  # no sysconf (Windows) or no such value
        return 8 * 2**30


def _gigabytes(n: int) -> str:
    return f"{n / 2**30:,.1f} GB"


class _Level:
    """Counts of one order: context (a tuple) -> next token -> count, with per-context totals."""

    def __init__(self, table: dict[Context, dict[Token, int]]):
        self.table = table
        self.totals = {ctx: sum(nexts.values()) for ctx, nexts in table.items()}

    def count(self, context: Context, token: Token) -> int:
        return self.table.get(context, {}).get(token, 0)

    def discount(self) -> float:
        freq = Counter(c for nexts in self.table.values() for c in nexts.values())
        n1, n2 = freq[1], freq[2]
        # With no count of exactly 1 the estimate would be 0, which leaves nothing for the lower
        # order: a token seen in no context of this order (a character met only in new text) would get
        # probability 0 under a smoothed model. 0.5 keeps the uniform floor.
        return n1 / (n1 + 2 * n2) if n1 > 0 else 0.5


class NGramModel:
    """An n-gram language model over any hashable tokens (characters when given a ``str``).

    >>> model = NGramModel(order=2, smoothing="none").fit("abab")
    >>> model.prob("a", "b")
    1.0
    """

    def __init__(
        self,
        order: int = 3,
        smoothing: str = "kneser-ney",
        k: float = 1.0,
        discount: float | None = None,
    ):
        if not isinstance(order, int) or order < 1:
            raise InputError(f"n-gram order must be an integer >= 1, got {order!r}")
        if smoothing not in SMOOTHINGS:
            raise InputError(f"unknown smoothing {smoothing!r}; choose one of {', '.join(SMOOTHINGS)}")
        if k <= 0:
            raise InputError(f"add-k needs k > 0, got {k}")
        if discount is not None and not 0 < discount <= 1:
            raise InputError(f"a Kneser-Ney discount must be in (0, 1], got {discount}")
        self.order = order
        self.smoothing = smoothing
        self.k = float(k)
        self.fixed_discount = discount
        self.vocab: list[Token] = []
        self._vocab_set: set = set()
        self.raw: dict[int, _Level] = {}  # order m -> raw counts of m-grams
        self.continuation: dict[int, _Level] = {}  # order m < n -> continuation counts
        self.discounts: dict[tuple[str, int], float] = {}

    # ------------------------------------------------------------------ training
    def fit(self, data: str | Sequence[Token], vocab: Sequence[Token] | None = None) -> NGramModel:
        """Count every m-gram (m = 1..order) of ``data``; returns ``self``.

        ``vocab`` fixes the vocabulary (e.g. every character of the whole corpus, or a
        tokenizer's ids) so that tokens absent from the training text still get probability
        under smoothing; by default it is the set of training tokens. A fit whose tables could
        outgrow :func:`memory_budget` (:func:`estimate_fit_bytes`) is refused before counting.
        """
        tokens = list(data)
        if not tokens:
            raise InputError("cannot fit an n-gram model on empty text")
        vocab = set(tokens) if vocab is None else set(vocab)
        missing = set(tokens) - vocab
        if missing:
            raise InputError(f"{len(missing)} training tokens are not in the given vocab, e.g. {next(iter(missing))!r}")
        need, budget = estimate_fit_bytes(self.order, len(tokens), len(vocab)), memory_budget()
        if need > budget:
            raise InputError(
                f"counting the {self.order}-grams of {len(tokens):,} tokens could take up to {_gigabytes(need)} "
                f"of memory, more than the {_gigabytes(budget)} allowed (half of this machine's); "
                "use a lower order or less text"
            )
        counts: dict[int, Counter] = {}
        for m in range(1, self.order + 1):
            counts[m] = Counter(tuple(tokens[i - m + 1 : i + 1]) for i in range(m - 1, len(tokens)))
        self._set_counts(counts, vocab)
        return self

    def _set_counts(self, counts: dict[int, Counter], vocab) -> None:
        try:
            self.vocab = sorted(set(vocab))
        except TypeError:
            self.vocab = list(dict.fromkeys(vocab))
        self._vocab_set = set(self.vocab)
        for m, grams in counts.items():
            table: dict[Context, dict[Token, int]] = defaultdict(dict)
            for gram, c in grams.items():
                table[gram[:-1]][gram[-1]] = c
            self.raw[m] = _Level(dict(table))
        # Continuation counts: each distinct (m+1)-gram "v h w" adds one to N1+(. h w).
        for m in range(1, self.order):
            table = defaultdict(lambda: defaultdict(int))
            for ctx, nexts in self.raw[m + 1].table.items():
                for w in nexts:
                    table[ctx[1:]][w] += 1
            self.continuation[m] = _Level({ctx: dict(n) for ctx, n in table.items()})
        self.discounts = {}
        for kind, levels in (("raw", self.raw), ("continuation", self.continuation)):
            for m, level in levels.items():
                self.discounts[(kind, m)] = self.fixed_discount or level.discount()

    def _check_fitted(self) -> None:
        if not self.raw:
            raise InputError("the n-gram model is not trained yet; call fit() first")

    # --------------------------------------------------------------- probability
    def _context(self, context: str | Sequence[Token]) -> Context:
        """The last ``order - 1`` tokens of ``context`` (all of it if shorter), as a tuple."""
        ctx = tuple(context)
        return ctx[max(0, len(ctx) - (self.order - 1)) :]

    def prob(self, context: str | Sequence[Token], token: Token) -> float:
        """P(token | context); only the last ``order - 1`` context tokens are used."""
        self._check_fitted()
        if token not in self._vocab_set:
            return 0.0
        ctx = self._context(context)
        if self.smoothing == "kneser-ney":
            return self._kn(ctx, token, top=True)
        level = self.raw[len(ctx) + 1]
        total = level.totals.get(ctx, 0)
        if self.smoothing == "add-k":
            return (level.count(ctx, token) + self.k) / (total + self.k * len(self.vocab))
        return level.count(ctx, token) / total if total else 0.0

    def _kn(self, ctx: Context, token: Token, top: bool) -> float:
        """Interpolated Kneser–Ney, recursing from ``ctx`` down to the uniform distribution."""
        m = len(ctx) + 1
        kind = "raw" if top else "continuation"
        level = self.raw[m] if top else self.continuation[m]
        lower = self._kn(ctx[1:], token, top=False) if ctx else 1 / len(self.vocab)
        total = level.totals.get(ctx, 0)
        if total == 0:
            return lower
        nexts = level.table[ctx]
        d = self.discounts[(kind, m)]
        return (max(nexts.get(token, 0) - d, 0) + d * len(nexts) * lower) / total

    def distribution(self, context: str | Sequence[Token] = ()) -> dict[Token, float]:
        """P(w | context) for every w in the vocabulary, as ``{token: probability}``."""
        self._check_fitted()
        ctx = self._context(context)
        if self.smoothing == "kneser-ney":
            return self._kn_distribution(ctx)
        return {w: self.prob(ctx, w) for w in self.vocab}

    def _kn_distribution(self, ctx: Context) -> dict[Token, float]:
        """All of ``_kn`` at once: start uniform, then mix in each longer context in turn."""
        dist = dict.fromkeys(self.vocab, 1 / len(self.vocab))
        for start in range(len(ctx), -1, -1):  # suffixes of ctx, shortest (empty) first
            sub, top = ctx[start:], start == 0
            m, kind = len(sub) + 1, "raw" if top else "continuation"
            level = self.raw[m] if top else self.continuation[m]
            total = level.totals.get(sub, 0)
            if total == 0:
                continue  # context never seen: the lower order keeps all the mass
            nexts = level.table[sub]
            d = self.discounts[(kind, m)]
            gamma = d * len(nexts) / total
            dist = {w: gamma * p for w, p in dist.items()}
            for w, c in nexts.items():
                dist[w] += max(c - d, 0) / total
        return dist

    def backoff(self, context: str | Sequence[Token]) -> Context:
        """The longest suffix of ``context`` that was seen as a context in training.

        Sampling uses it so that an unseen context falls back to a lower order instead of a
        distribution of zeros (no smoothing) or a flat one (add-k).
        """
        self._check_fitted()
        ctx = self._context(context)
        while ctx and self.raw[len(ctx) + 1].totals.get(ctx, 0) == 0:
            ctx = ctx[1:]
        return ctx

    # ----------------------------------------------------------------- sampling
    def sample(
        self,
        prompt: str | Sequence[Token] = (),
        n: int = 100,
        temperature: float = 1.0,
        seed: int | None = None,
    ) -> list[Token]:
        """Generate ``n`` tokens after ``prompt`` (returned without the prompt).

        Each step draws from ``distribution(backoff(context))`` with every probability raised
        to ``1 / temperature`` and renormalised; ``temperature=0`` picks the most likely token.
        """
        self._check_fitted()
        if n < 0:
            raise InputError(f"number of tokens to sample must be >= 0, got {n}")
        if temperature < 0:
            raise InputError(f"temperature must be >= 0, got {temperature}")
        rng = random.Random(seed)
        history = list(prompt)
        out: list[Token] = []
        for _ in range(n):
            dist = self.distribution(self.backoff(history))
            tokens, probs = list(dist), list(dist.values())
            if temperature == 0:
                token = tokens[max(range(len(probs)), key=probs.__getitem__)]
            else:
                top = max(probs)  # dividing by the largest keeps p ** (1/T) from underflowing to 0
                weights = [(p / top) ** (1 / temperature) for p in probs]
                token = rng.choices(tokens, weights=weights)[0]
            history.append(token)
            out.append(token)
        return out

    # --------------------------------------------------------------- evaluation
    def evaluate(self, data: str | Sequence[Token]) -> Evaluation:
        """Score every token of ``data`` from the tokens before it (see the module docstring)."""
        self._check_fitted()
        tokens = list(data)
        if not tokens:
            raise InputError("cannot compute perplexity of empty text")
        nll, n_zero, n_unknown, first_zero = 0.0, 0, 0, None
        for i, token in enumerate(tokens):
            ctx = tuple(tokens[max(0, i - self.order + 1) : i])
            p = self.prob(ctx, token)
            if p > 0:
                nll -= math.log(p)
            else:
                n_zero += 1
                n_unknown += token not in self._vocab_set
                first_zero = first_zero or (ctx, token)
        if n_zero:
            return Evaluation(math.inf, math.inf, len(tokens), n_zero, first_zero, n_unknown)
        ce = nll / len(tokens)
        return Evaluation(math.exp(ce), ce, len(tokens), 0, None)

    def perplexity(self, data: str | Sequence[Token]) -> float:
        """exp(mean negative log-likelihood per token); ``math.inf`` if any token has P = 0."""
        return self.evaluate(data).perplexity

    # ------------------------------------------------------------ tables (data)
    def count(self, gram: str | Sequence[Token]) -> int:
        """How many times the m-gram ``gram`` (1 <= m <= order) occurs in the training text."""
        self._check_fitted()
        gram = tuple(gram)
        if not 1 <= len(gram) <= self.order:
            raise InputError(f"an m-gram of this model has 1 to {self.order} tokens, got {len(gram)}")
        return self.raw[len(gram)].count(gram[:-1], gram[-1])

    def _need_bigrams(self) -> None:
        self._check_fitted()
        if self.order < 2:
            raise InputError("bigram tables need a model of order >= 2")

    def top_bigrams(self, k: int = 20) -> list[tuple[tuple[Token, Token], int]]:
        """The ``k`` most frequent pairs ``((a, b), count)``, most frequent first."""
        self._need_bigrams()
        pairs = [((ctx[0], b), c) for ctx, nexts in self.raw[2].table.items() for b, c in nexts.items()]
        return sorted(pairs, key=lambda item: (-item[1], repr(item[0])))[:k]

    def probability_matrix(self, tokens: Sequence[Token] | None = None) -> list[list[float]]:
        """``matrix[i][j] = P(tokens[j] | tokens[i])`` with this model's smoothing.

        ``tokens`` defaults to the whole vocabulary; each full row sums to 1.
        """
        self._need_bigrams()
        tokens = list(self.vocab if tokens is None else tokens)
        return [[self.prob((a,), b) for b in tokens] for a in tokens]

    def followers(self, context: str | Sequence[Token], k: int = 10) -> list[tuple[Token, int, float]]:
        """"Who follows X": the ``k`` likeliest next tokens as ``(token, count, probability)``.

        ``count`` is how often the token followed ``context`` in training (after trimming the
        context to ``order - 1`` tokens); ``probability`` is the model's, smoothing included.
        """
        self._check_fitted()
        ctx = self._context(context)
        dist = self.distribution(ctx)
        level = self.raw[len(ctx) + 1]
        ranked = sorted(dist.items(), key=lambda item: (-item[1], repr(item[0])))[:k]
        return [(w, level.count(ctx, w), p) for w, p in ranked]

    # ------------------------------------------------------------------- saving
    def to_dict(self) -> dict:
        """A JSON-ready description: settings, vocabulary and the raw counts of every order."""
        self._check_fitted()
        if not all(isinstance(t, (str, int)) for t in self.vocab):
            raise InputError("only str or int tokens can be saved to JSON")
        index = {t: i for i, t in enumerate(self.vocab)}
        counts = {
            str(m): [[*(index[t] for t in ctx), index[w], c] for ctx, nexts in level.table.items() for w, c in nexts.items()]
            for m, level in self.raw.items()
        }
        return {
            "format": FORMAT,
            "order": self.order,
            "smoothing": self.smoothing,
            "k": self.k,
            "discount": self.fixed_discount,
            "vocab": self.vocab,
            "counts": counts,
        }

    @classmethod
    def from_dict(cls, data: dict) -> NGramModel:
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise CorruptFileError(f"not a fromzero n-gram model (expected format {FORMAT!r})")
        try:
            model = cls(data["order"], data["smoothing"], data["k"], data["discount"])
            vocab = data["vocab"]
            counts = {
                int(m): Counter({tuple(vocab[i] for i in row[:-1]): row[-1] for row in rows})
                for m, rows in data["counts"].items()
            }
        except (KeyError, IndexError, TypeError) as err:
            raise CorruptFileError(f"n-gram model file is incomplete or damaged: {err!r}") from err
        if sorted(counts) != list(range(1, model.order + 1)):
            raise CorruptFileError(f"n-gram model file lacks counts for orders 1..{model.order}")
        model._set_counts(counts, vocab)
        return model

    def save(self, path: str | Path) -> Path:
        """Write the model as one JSON file (atomically); returns its path."""
        path = Path(path)
        write_json(path, self.to_dict(), indent=None)
        return path

    @classmethod
    def load(cls, path: str | Path) -> NGramModel:
        data = read_json(path, hint="train an n-gram model with `fromzero ngram train`")
        return cls.from_dict(data)
