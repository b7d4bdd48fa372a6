"""word2vec from scratch: learn word vectors by predicting which words appear near which.

Mikolov et al. (2013, "Distributed representations of words and phrases and their
compositionality"). Two ways to turn running text into predictions:

``skipgram``
    Each word predicts each of the words around it: one (center, context) pair per neighbour.
``cbow``
    "Continuous bag of words": the average of the surrounding words' vectors predicts the word
    in the middle.

Predicting one word out of the whole vocabulary would need a softmax over every word at every
step. *Negative sampling* replaces it with a few yes/no questions: "does this word go with this
context?" for the true word (answer yes) and for ``negatives`` random noise words (answer no),
each a logistic regression on the dot product of two vectors. The model is just two matrices:
``w_in`` (one vector per word as the input: the word vectors we keep) and ``w_out`` (one vector
per word as the thing predicted). Words used in the same contexts must give similar answers to
the same questions, so their input vectors end up close together.

The gradients are two lines, so they are written out by hand and applied with plain SGD, as
the original C program (word2vec.c) does. Its other tricks are all here, each explained where
it is done: the ``min_count`` vocabulary, the unigram^0.75 noise distribution, the subsampling
of frequent words, the randomly shrunk window and the linear learning-rate decay.

word2vec.c updates the weights after every single prediction, one word at a time; Python is far
too slow for that. Here the work is reorganised, not changed:

- **Batches.** The predictions of a few hundred consecutive center words are computed from the
  same weights and their updates summed into the matrices (``index_add_`` adds up the updates of
  a word that occurs several times), as if made one after the other without looking. A batch
  holds only a few occurrences of even the most frequent word (:func:`batch_centers`), so the
  sums do not overshoot.
- **Index work in NumPy, once per block.** Which words survive subsampling, every (center,
  context) pair of the shrunk windows and all the noise words are worked out with array
  operations for tens of thousands of center words at a time (:func:`epoch_batches`); a
  training step is then a few slices and about fifteen PyTorch calls, however big the batch.
- **Noise words in constant time** with Walker's alias method (:class:`AliasTable`).
- **Flat lists, no padding.** The pairs are listed center by center; CBOW averages each
  window's vectors with ``embedding_bag`` (gather and mean in one call).

All randomness comes from one NumPy generator seeded with ``seed``: the same seed, corpus and
settings give identical vectors.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file

from fromzero.console import progress
from fromzero.data.settings import WORD2VEC_DEFAULTS, WORD2VEC_LR
from fromzero.errors import CorruptFileError, InputError, MissingFileError
from fromzero.files import atomic_path, read_json, write_json, write_text

MODES = ("skipgram", "cbow")
FORMAT = "fromzero-word2vec/1"
VECTORS_FILE, VOCAB_FILE = "vectors.safetensors", "vocab.json"
# A word: letters and digits, possibly joined by apostrophes inside it ("don't", "o'clock").
_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)*")
# A sentence ends at a line break, or at . ! ? followed by a space or the end of the text.
_SENTENCE_END = re.compile(r"\n|[.!?]+(?=\s|$)")


# The defaults live in fromzero.data.settings, a module that imports nothing, so that the command
# line can show them without importing PyTorch.
_DEFAULT = WORD2VEC_DEFAULTS


@dataclass
class Word2VecConfig:
    dim: int = _DEFAULT["dim"]  # size of each word vector
    window: int = _DEFAULT["window"]  # the most words looked at on each side of a word
    negatives: int = _DEFAULT["negatives"]  # noise words per prediction
    min_count: int = _DEFAULT["min_count"]  # words seen fewer times are dropped
    epochs: int = _DEFAULT["epochs"]  # passes over the corpus
    lr: float | None = None  # starting learning rate; None: the mode's own (WORD2VEC_LR)
    min_lr: float = _DEFAULT["min_lr"]  # learning rate reached at the very end of training
    sample: float = _DEFAULT["sample"]  # subsampling threshold for frequent words; 0 keeps every word
    mode: str = _DEFAULT["mode"]  # "skipgram" or "cbow"
    # The most center words whose predictions are computed together, from the same weights, and
    # their updates summed; a tiny vocabulary gets fewer (batch_centers).
    batch_size: int = _DEFAULT["batch_size"]
    seed: int = _DEFAULT["seed"]
    # These matrices are too small to gain from many threads, and spinning threads slow
    # everything down when other programs share the cores.
    threads: int = _DEFAULT["threads"]

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise InputError(f"mode must be one of {', '.join(MODES)}, not {self.mode!r}")
        if self.lr is None:
            # The starting rates of word2vec.c: CBOW's averaged input takes larger steps.
            self.lr = WORD2VEC_LR[self.mode]
        for name in ("dim", "window", "negatives", "min_count", "epochs", "batch_size", "threads"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"{name} must be a whole number of at least 1, not {value!r}")
        if not isinstance(self.seed, int):
            raise InputError(f"seed must be a whole number, not {self.seed!r}")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise InputError(f"lr must be a number above 0, not {self.lr!r}")
        if not (isinstance(self.min_lr, (int, float)) and 0 <= self.min_lr <= self.lr):
            raise InputError(f"min_lr must be between 0 and lr ({self.lr}), not {self.min_lr!r}")
        if not (isinstance(self.sample, (int, float)) and math.isfinite(self.sample) and self.sample >= 0):
            raise InputError(f"sample must be a number of at least 0 (0 turns subsampling off), not {self.sample!r}")


def tokenize_words(text: str) -> list[list[str]]:
    """Split text into sentences of lowercase words, by a deliberately simple rule.

    A sentence ends at a line break, or at ``.``, ``!`` or ``?`` followed by a space or the end
    of the text ("3.5" does not end one; "Mr. Smith" does: the price of a simple rule). A word
    is a run of letters and digits, possibly joined by apostrophes inside it ("don't"); other
    punctuation, and apostrophes at the edges of a word (quotation marks), are dropped.
    Sentences left without words are left out. Windows never cross a sentence boundary.
    """
    sentences = (_WORD.findall(part.lower()) for part in _SENTENCE_END.split(text))
    return [sentence for sentence in sentences if sentence]


def _sentences(corpus: str | Iterable[str | Sequence[str]]) -> Iterator[Sequence[str]]:
    """A text, or each text of a list, goes through :func:`tokenize_words`; lists of words are
    sentences already and are used as given."""
    if isinstance(corpus, str):
        yield from tokenize_words(corpus)
        return
    for item in corpus:
        if isinstance(item, str):
            yield from tokenize_words(item)
        elif all(isinstance(word, str) for word in item):
            yield item
        else:
            raise InputError(f"a sentence must be a list of words (strings), not {list(item)[:5]!r}")


@dataclass
class Corpus:
    """The training text as word ids: what every epoch reads."""

    words: list[str]  # the vocabulary, most frequent first (equal counts: alphabetical order)
    counts: np.ndarray  # how often each word occurs (int64)
    ids: np.ndarray  # every occurrence of a vocabulary word, in corpus order (int64)
    sentence: np.ndarray  # the number of the sentence each occurrence belongs to (int64)


def encode_corpus(corpus: str | Iterable[str | Sequence[str]], min_count: int) -> Corpus:
    """Count the words, keep those seen ``min_count`` times or more, and number them.

    Rare words are removed before windows are formed, as word2vec.c does: they have too few
    contexts to learn a good vector, and removing them brings the other words closer together.
    """
    sentences = list(_sentences(corpus))
    flat = list(chain.from_iterable(sentences))
    if not flat:
        raise InputError("the corpus is empty: give a text or sentences with at least one word")
    first_seen = {word: i for i, word in enumerate(dict.fromkeys(flat))}  # each distinct word, numbered
    raw = np.fromiter(map(first_seen.__getitem__, flat), dtype=np.int64, count=len(flat))
    seen = np.bincount(raw, minlength=len(first_seen))
    names = list(first_seen)
    kept = [i for i in sorted(range(len(names)), key=lambda i: (-seen[i], names[i])) if seen[i] >= min_count]
    if not kept:
        raise InputError(f"no word occurs at least min_count={min_count} times ({len(names)} distinct words, "
                         f"the most frequent occurs {seen.max()} times); lower --min-count or give more text")
    new_id = np.full(len(names), -1, dtype=np.int64)
    new_id[kept] = np.arange(len(kept))
    ids = new_id[raw]
    sentence = np.repeat(np.arange(len(sentences)), list(map(len, sentences)))
    return Corpus([names[i] for i in kept], seen[kept], ids[ids >= 0], sentence[ids >= 0])


def noise_distribution(counts: Sequence[int] | np.ndarray) -> np.ndarray:
    """The probability of drawing each word as a noise word: its count to the power 0.75, normalised.

    The power flattens the word frequencies: rare words are drawn more often than they occur and
    frequent words less, which Mikolov et al. found to work better than either the plain
    frequencies or a uniform draw.
    """
    weights = np.asarray(counts, dtype=np.float64) ** 0.75
    return weights / weights.sum()


@dataclass
class AliasTable:
    """Walker's alias method: draw from any distribution over n words in constant time per draw.

    Picture n columns, one per word, each of height 1/n, and the probabilities poured into them:
    every column can be filled with at most two words, its own (the share ``accept[i]`` of the
    column) and one other, ``alias[i]`` (the rest). A draw picks a column uniformly, then which of
    its two words: a random number and two look-ups, however many words there are. (word2vec.c
    fills a table of 10^8 word ids in proportion instead, which is big and only nearly exact; a
    binary search of the running sums is exact too, but several times slower per draw.)
    """

    accept: np.ndarray  # (n,) the share of column i that belongs to word i
    alias: np.ndarray  # (n,) int64: the word that fills the rest of column i

    @classmethod
    def build(cls, probabilities: np.ndarray) -> AliasTable:
        """Vose's way: a column still under-full takes the rest from one that is over-full."""
        n = len(probabilities)
        height = (np.asarray(probabilities, dtype=np.float64) * n).tolist()  # 1.0: a column exactly full
        accept, alias = np.ones(n), np.arange(n)
        under = [i for i in range(n) if height[i] < 1]
        over = [i for i in range(n) if height[i] >= 1]
        while under and over:
            small, large = under.pop(), over[-1]
            accept[small], alias[small] = height[small], large
            height[large] -= 1 - height[small]  # the large word filled the rest of the small one's column
            if height[large] < 1:
                under.append(over.pop())
        # Whatever is left over is full up to rounding errors: accept stays 1.
        return cls(accept, alias)

    def sample(self, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
        """Word ids of the given shape, each drawn independently.

        One uniform number x in [0, n) does both jobs: its whole part picks the column, its
        fraction (uniform in [0, 1) again) picks one of the column's two words.
        """
        x = rng.random(shape) * len(self.alias)
        column = x.astype(np.int64)
        x -= column
        return np.where(x < self.accept[column], column, self.alias[column])


def keep_probabilities(counts: Sequence[int] | np.ndarray, sample: float) -> np.ndarray:
    """The chance that one occurrence of each word is kept in an epoch (word2vec.c's formula).

    With ``f`` the word's share of the corpus (count / total) and ``t = sample``::

        P(keep) = (sqrt(f / t) + 1) * t / f        (capped at 1)

    Words rarer than about ``t`` are always kept; a word making up 5% of the text is kept about
    16% of the time with ``t = 1e-3``. "the" and "a" sit next to almost every word and teach
    little, so dropping most of them speeds training up and widens the real reach of a window.
    """
    counts = np.asarray(counts, dtype=np.float64)
    if sample == 0:
        return np.ones_like(counts)
    share = counts / counts.sum()
    return np.minimum((np.sqrt(share / sample) + 1) * sample / share, 1.0)


def learning_rate(config: Word2VecConfig, done: float) -> float:
    """The learning rate once a fraction ``done`` of all training words (every epoch together) has
    been read: a straight line from ``lr`` down to ``min_lr``. Large steps first move the random
    vectors quickly; small steps at the end let them settle instead of jumping around."""
    return config.lr - (config.lr - config.min_lr) * done


# The most times the most frequent center word should turn up in one batch (see batch_centers).
MAX_REPEATS = 6


def batch_centers(config: Word2VecConfig, counts: np.ndarray, keep: np.ndarray) -> int:
    """How many center words go into one batch: ``batch_size``, or fewer for a tiny vocabulary.

    The updates of a batch are all computed from the same weights and summed, as if made one
    after the other without looking. That is harmless while a word turns up only a few times in
    a batch. In a vocabulary of a few dozen words every word turns up in every batch, its summed
    updates all push the same way and overshoot, and training learns nothing or blows up. So a
    batch holds about ``MAX_REPEATS`` occurrences of the most frequent word at most (counted
    after subsampling): a few hundred centers for real text, a hundred or so for a toy corpus.
    """
    kept = counts * keep  # how often each word is expected to be a center in one epoch
    return max(1, min(config.batch_size, int(MAX_REPEATS * kept.sum() / kept.max())))


@dataclass
class Batch:
    """The predictions of a batch of consecutive center words, all computed from the same weights.

    Each prediction guesses one word from the input vectors of others: skip-gram makes one per
    (center, context) pair, guessing the context from the center alone; CBOW one per center,
    guessing it from the mean of its window.
    """

    inputs: torch.Tensor  # skip-gram: the center of each pair; CBOW: the words of every window, one after another
    words: torch.Tensor  # (predictions, 1 + negatives): the word each prediction guesses, then its noise words
    sign: torch.Tensor  # (predictions, 1 + negatives): 1 for the guessed word, -1 for noise, 0 for a skipped draw
    position: int  # how many of the epoch's words (before subsampling) come before the batch
    window: torch.Tensor | None = None  # CBOW: which prediction each word of inputs belongs to (0, 1, ...)
    starts: torch.Tensor | None = None  # CBOW: where each prediction's window begins in inputs


# Center words whose windows are worked out in one go with NumPy; bounds the memory an epoch needs.
BLOCK_WORDS = 1 << 16


def epoch_batches(corpus: Corpus, keep: np.ndarray, noise: AliasTable, config: Word2VecConfig, centers: int,
                  rng: np.random.Generator) -> Iterator[Batch]:
    """One epoch: subsample the corpus, then walk through it in batches of ``centers`` center words.

    Windows are taken over the words that survive subsampling, so dropping a frequent word lets
    the window reach further. The index work (which pairs, which noise words) is done with NumPy
    for a block of many batches at once, so that each batch costs Python only a few slices.
    """
    kept = rng.random(len(corpus.ids)) < keep[corpus.ids]
    ids, sentence, position = corpus.ids[kept], corpus.sentence[kept], np.flatnonzero(kept)
    # The dynamic window: each center looks 1..window words each way, drawn uniformly, so a
    # neighbour at distance d is used with probability (window - d + 1) / window: near words
    # count more than far ones.
    reach = rng.integers(1, config.window + 1, len(ids))
    offsets = np.concatenate([np.arange(-config.window, 0), np.arange(1, config.window + 1)])
    for block in range(0, len(ids), BLOCK_WORDS):
        center = np.arange(block, min(block + BLOCK_WORDS, len(ids)))
        around = center[:, None] + offsets  # (centers, 2 window): the positions before and after each
        inside = (np.abs(offsets) <= reach[center, None]) & (around >= 0) & (around < len(ids))
        around = around.clip(0, len(ids) - 1)
        inside &= sentence[around] == sentence[center, None]  # a window stops at the end of its sentence
        pair_center, slot = np.nonzero(inside)  # row by row: the pairs come center by center
        context = ids[around[pair_center, slot]]
        pairs_before = np.searchsorted(pair_center, np.arange(len(center) + 1))  # [i]: the pairs of centers < i
        if config.mode == "skipgram":  # one prediction per pair: its context, from its center
            inputs, guessed = ids[center][pair_center], context
        else:  # one prediction per center: the center, from its window
            inputs, guessed = context, ids[center]
        words = np.empty((len(guessed), 1 + config.negatives), dtype=np.int64)
        words[:, 0], words[:, 1:] = guessed, noise.sample((len(guessed), config.negatives), rng)
        # Noise is -1; a noise draw of the guessed word itself is skipped (0), as word2vec.c does.
        sign = np.where(words == words[:, :1], 0, -1).astype(np.float32)
        sign[:, 0] = 1
        inputs, words, sign = torch.from_numpy(inputs), torch.from_numpy(words), torch.from_numpy(sign)
        window, starts = torch.from_numpy(pair_center), torch.from_numpy(pairs_before[:-1])
        for first in range(0, len(center), centers):
            last = min(first + centers, len(center))
            a, b = pairs_before[first], pairs_before[last]  # the batch's pairs
            at = int(position[block + first])
            if config.mode == "skipgram":
                yield Batch(inputs[a:b], words[a:b], sign[a:b], at)
            else:
                yield Batch(inputs[a:b], words[first:last], sign[first:last], at, window[a:b] - first,
                            starts[first:last] - a)


def negative_sampling(w_out: torch.Tensor, h: torch.Tensor, words: torch.Tensor, sign: torch.Tensor,
                      lr: float) -> torch.Tensor:
    """Update the output vectors for one batch of predictions; return the update for the inputs.

    Row i asks "does word ``words[i, 0]`` go with input ``h[i]``?" (label 1) and the same for each
    noise word ``words[i, 1:]`` (label 0). For the score ``s = h . u`` the logistic loss
    ``-log sigmoid(s)`` (or ``-log sigmoid(-s)`` for label 0) has the derivative
    ``sigmoid(s) - label``, so one SGD step moves ``u`` by ``g h`` and ``h`` by ``g u`` with
    ``g = lr (label - sigmoid(s))`` (word2vec.c's ``g``). With label 1 that is ``lr sigmoid(-s)``,
    with label 0 ``-lr sigmoid(s)``: both are ``lr sign sigmoid(-sign s)`` with ``sign`` 1 or -1
    (and ``sign`` 0 gives 0: a skipped noise draw), one formula for the whole batch. The update
    for ``h`` is computed with the output vectors from before this step, as word2vec.c does.
    """
    u = w_out.index_select(0, words.flatten()).view(*words.shape, w_out.shape[1])  # (P, 1 + negatives, dim)
    g = torch.einsum("pd,pkd->pk", h, u).mul_(sign).neg_().sigmoid_().mul_(sign).mul_(lr)
    update = torch.einsum("pk,pkd->pd", g, u)
    # u is done with: the output updates g h overwrite it, in memory that is still in the cache.
    torch.mul(g[:, :, None], h[:, None, :], out=u)
    w_out.index_add_(0, words.flatten(), u.flatten(0, 1))
    return update


def skipgram_step(w_in: torch.Tensor, w_out: torch.Tensor, batch: Batch, lr: float) -> None:
    """Skip-gram: every (center, context) pair of the batch is one prediction, from the center's vector."""
    update = negative_sampling(w_out, w_in.index_select(0, batch.inputs), batch.words, batch.sign, lr)
    w_in.index_add_(0, batch.inputs, update)


def cbow_step(w_in: torch.Tensor, w_out: torch.Tensor, batch: Batch, lr: float) -> None:
    """CBOW: the mean of the window's vectors predicts the center; every word of the window gets
    the whole update for that mean (as in word2vec.c, where it is not divided among them).

    ``embedding_bag`` gathers and averages each window's vectors in one step. A center alone in
    its sentence has an empty window, so h = 0: its prediction then changes no vector (g h = 0,
    and there are no input words to update), as word2vec.c skips it.
    """
    h = torch.nn.functional.embedding_bag(batch.inputs, w_in, batch.starts, mode="mean")
    update = negative_sampling(w_out, h, batch.words, batch.sign, lr)
    w_in.index_add_(0, batch.inputs, update.index_select(0, batch.window))


def train_word2vec(sentences: str | Iterable[str | Sequence[str]], config: Word2VecConfig | None = None,
                   quiet: bool = False) -> WordVectors:
    """Learn a vector for every word seen ``config.min_count`` times or more.

    ``sentences`` is a text, a list of texts (e.g. ``load_documents("stories")``), each split
    with :func:`tokenize_words`, or sentences that are lists of words already.
    """
    config = config or Word2VecConfig()
    corpus = encode_corpus(sentences, config.min_count)
    rng = np.random.default_rng(config.seed)
    # Input vectors start small and random (uniform in +-1/dim, as gensim starts them: twice
    # word2vec.c's range, which on a small corpus leaves the vectors crowded more closely into
    # one direction than gensim's after the same epochs); output vectors start at zero.
    w_in = torch.from_numpy((2 * rng.random((len(corpus.words), config.dim), dtype=np.float32) - 1) / config.dim)
    w_out = torch.zeros(len(corpus.words), config.dim)
    noise = AliasTable.build(noise_distribution(corpus.counts))
    keep = keep_probabilities(corpus.counts, config.sample)
    centers = batch_centers(config, corpus.counts, keep)
    step = skipgram_step if config.mode == "skipgram" else cbow_step

    total = len(corpus.ids)
    threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    try:
        with progress(disable=quiet) as bar:
            task = bar.add_task(f"word2vec {config.mode}", total=config.epochs * total)
            for epoch in range(config.epochs):
                for i, batch in enumerate(epoch_batches(corpus, keep, noise, config, centers, rng)):
                    done = epoch * total + batch.position
                    step(w_in, w_out, batch, learning_rate(config, done / (config.epochs * total)))
                    if i % 64 == 0:  # the bar costs more than a small batch; it need not move that often
                        bar.update(task, completed=done)
                bar.update(task, completed=(epoch + 1) * total)
                if not torch.isfinite(w_in).all():
                    raise InputError(f"training diverged in epoch {epoch + 1} (the vectors overflowed); "
                                     f"lower lr ({config.lr}) or batch_size ({config.batch_size})")
    finally:
        torch.set_num_threads(threads)
    return WordVectors(corpus.words, w_in.numpy(), corpus.counts.tolist())


@dataclass
class WordVectors:
    """Trained word vectors and what can be asked of them (cosines, neighbours, analogies)."""

    words: list[str]  # most frequent first
    vectors: np.ndarray = field(repr=False)  # (len(words), dim) float32, row i is words[i]
    counts: list[int]  # how often each word occurred in the training corpus
    index: dict[str, int] = field(init=False, repr=False)  # word -> its row

    def __post_init__(self) -> None:
        self.vectors = np.ascontiguousarray(self.vectors, dtype=np.float32)
        if self.vectors.ndim != 2 or not len(self.words) == len(self.vectors) == len(self.counts):
            raise InputError(f"need one vector and one count per word: {len(self.words)} words, "
                             f"vectors of shape {self.vectors.shape}, {len(self.counts)} counts")
        self.index = {word: i for i, word in enumerate(self.words)}
        if len(self.index) != len(self.words):
            raise InputError("each word may have only one vector; the word list repeats a word")
        # Cosines are dot products of unit vectors: normalise once, not at every question.
        norms = np.linalg.norm(self.vectors, axis=1, keepdims=True)
        self._unit = self.vectors / np.maximum(norms, np.finfo(np.float32).tiny)

    @property
    def dim(self) -> int:
        return self.vectors.shape[1]

    def _row(self, word: str) -> int:
        if word not in self.index:
            raise InputError(f"{word!r} is not in the vocabulary ({len(self.words)} words; "
                             "words seen fewer than min_count times are left out)")
        return self.index[word]

    def vector(self, word: str) -> np.ndarray:
        """The vector of ``word``; a word not in the vocabulary is a one-line error."""
        return self.vectors[self._row(word)]

    def similarity(self, a: str, b: str) -> float:
        """The cosine of the angle between the vectors of ``a`` and ``b`` (1: same direction)."""
        return float(self._unit[self._row(a)] @ self._unit[self._row(b)])

    def most_similar(self, positive: str | Sequence[str] = (), negative: str | Sequence[str] = (),
                     k: int = 10) -> list[tuple[str, float]]:
        """The ``k`` words nearest to the query by cosine, with their cosines, best first.

        One word: its neighbours. Several: "3CosAdd", as gensim does it: the unit vectors of the
        ``positive`` words added, those of the ``negative`` words subtracted, and the words
        nearest to that direction. The query words themselves are never answers.
        """
        positive = [positive] if isinstance(positive, str) else list(positive)
        negative = [negative] if isinstance(negative, str) else list(negative)
        if not positive and not negative:
            raise InputError("most_similar needs at least one word")
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise InputError(f"k must be a whole number of at least 1, not {k!r}")
        rows = [self._row(word) for word in positive + negative]
        signs = np.array([1.0] * len(positive) + [-1.0] * len(negative), dtype=np.float32)
        query = signs @ self._unit[rows]
        query /= max(np.linalg.norm(query), np.finfo(np.float32).tiny)
        cosines = self._unit @ query
        order = np.argsort(-cosines, kind="stable")[: k + len(rows)]
        asked = set(rows)
        return [(self.words[i], float(cosines[i])) for i in order if i not in asked][:k]

    def analogy(self, a: str, b: str, c: str) -> str:
        """``a`` is to ``b`` as ``c`` is to what? ("man", "king", "woman" -> ideally "queen")."""
        answers = self.most_similar(positive=[b, c], negative=[a], k=1)
        if not answers:
            raise InputError("the vocabulary holds no word besides the three of the analogy")
        return answers[0][0]

    def save(self, directory: str | Path) -> None:
        """``vectors.safetensors`` (the matrix) and ``vocab.json`` (the words and their counts)."""
        directory = Path(directory)
        with atomic_path(directory / VECTORS_FILE) as tmp:
            save_file({"vectors": self.vectors}, str(tmp))
        write_json(directory / VOCAB_FILE, {"format": FORMAT, "dim": self.dim, "words": self.words,
                                            "counts": self.counts})

    @classmethod
    def load(cls, directory: str | Path) -> WordVectors:
        """Read what :meth:`save` wrote; a damaged or mismatched file is a one-line error."""
        directory = Path(directory)
        vectors_path = directory / VECTORS_FILE
        if not vectors_path.is_file():
            raise MissingFileError(f"no word vectors in {directory}: {VECTORS_FILE} is missing")
        vocab = read_json(directory / VOCAB_FILE, hint="the word vectors were not saved completely")
        try:
            vectors = load_file(str(vectors_path))["vectors"]
        except (SafetensorError, KeyError) as err:
            raise CorruptFileError(f"{vectors_path} is truncated or corrupt ({err})") from None
        if not (isinstance(vocab, dict) and vocab.get("format") == FORMAT and isinstance(vocab.get("words"), list)
                and isinstance(vocab.get("counts"), list) and len(vocab["words"]) == len(vocab["counts"])):
            raise CorruptFileError(f"{directory / VOCAB_FILE} is not a {FORMAT} vocabulary")
        if vectors.shape != (len(vocab["words"]), vocab.get("dim")):
            raise CorruptFileError(f"{vectors_path} holds vectors of shape {vectors.shape}, but "
                                   f"{VOCAB_FILE} lists {len(vocab['words'])} words of dim {vocab.get('dim')}")
        return cls(vocab["words"], vectors, vocab["counts"])

    def save_word2vec_format(self, path: str | Path) -> None:
        """The text format of word2vec.c, which gensim and most tools read: a header line
        ``"<words> <dim>"``, then one line per word: the word and its numbers, separated by spaces.
        Nine significant digits give back every float32 exactly."""
        for word in self.words:
            if not word or re.search(r"\s", word):
                raise InputError(f"{word!r} cannot be written in the word2vec text format: "
                                 "a word there may not be empty or hold spaces")
        lines = [f"{len(self.words)} {self.dim}"]
        rows = zip(self.words, self.vectors.tolist())
        lines += [word + " " + " ".join(f"{x:.9g}" for x in row) for word, row in rows]
        write_text(path, "\n".join(lines) + "\n")
