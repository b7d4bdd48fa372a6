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

One difference makes it fast in PyTorch: word2vec.c updates the weights after every single
pair, while here the pairs of ``batch_size`` consecutive center words are computed from the same
weights and their updates summed (``index_add_`` adds the updates of a word that occurs twice).
All randomness comes from one generator seeded with ``seed``: the same seed, corpus and settings
give identical vectors.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

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
NoiseDraw = Callable[[int], torch.Tensor]  # number of predictions -> (that many, negatives) noise ids


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
    # Center words whose updates are computed together. Their updates to one word are summed, as
    # if applied one after the other without looking; in a tiny vocabulary a word recurs so
    # often in a batch that large batches overshoot and blow up, so the default stays small.
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
    ids: torch.Tensor  # every occurrence of a vocabulary word, in corpus order (int64)
    sentence: torch.Tensor  # the number of the sentence each occurrence belongs to


def encode_corpus(corpus: str | Iterable[str | Sequence[str]], min_count: int) -> Corpus:
    """Count the words, keep those seen ``min_count`` times or more, and number them.

    Rare words are removed before windows are formed, as word2vec.c does: they have too few
    contexts to learn a good vector, and removing them brings the other words closer together.
    """
    first_seen: dict[str, int] = {}
    flat: list[int] = []
    lengths: list[int] = []
    for sentence in _sentences(corpus):
        flat.extend(first_seen.setdefault(word, len(first_seen)) for word in sentence)
        lengths.append(len(sentence))
    if not flat:
        raise InputError("the corpus is empty: give a text or sentences with at least one word")
    raw = np.asarray(flat, dtype=np.int64)
    seen = np.bincount(raw, minlength=len(first_seen))
    names = list(first_seen)
    kept = [i for i in sorted(range(len(names)), key=lambda i: (-seen[i], names[i])) if seen[i] >= min_count]
    if not kept:
        raise InputError(f"no word occurs at least min_count={min_count} times ({len(names)} distinct words, "
                         f"the most frequent occurs {seen.max()} times); lower --min-count or give more text")
    new_id = np.full(len(names), -1, dtype=np.int64)
    new_id[kept] = np.arange(len(kept))
    ids = new_id[raw]
    sentence = np.repeat(np.arange(len(lengths)), lengths)
    return Corpus([names[i] for i in kept], seen[kept], torch.from_numpy(ids[ids >= 0]),
                  torch.from_numpy(sentence[ids >= 0]))


def noise_distribution(counts: Sequence[int] | np.ndarray) -> np.ndarray:
    """The probability of drawing each word as a noise word: its count to the power 0.75, normalised.

    The power flattens the word frequencies: rare words are drawn more often than they occur and
    frequent words less, which Mikolov et al. found to work better than either the plain
    frequencies or a uniform draw.
    """
    weights = np.asarray(counts, dtype=np.float64) ** 0.75
    return weights / weights.sum()


def sample_noise(noise_cdf: torch.Tensor, shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
    """Draw word ids from the distribution whose running sum is ``noise_cdf``.

    A uniform number u in [0, 1) lands in the interval of word i when cdf[i-1] <= u < cdf[i];
    ``searchsorted`` finds that interval for a whole batch at once (word2vec.c looks u up in a
    table of 10^8 ids filled in the same proportions).
    """
    u = torch.rand(shape, generator=generator, dtype=torch.float64)
    return torch.searchsorted(noise_cdf, u, right=True).clamp_(max=len(noise_cdf) - 1)


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


@dataclass
class Batch:
    """``batch_size`` consecutive center words, each with the words of its window."""

    centers: torch.Tensor  # (B,) word ids
    contexts: torch.Tensor  # (B, 2 window) ids of the words before and after each center
    inside: torch.Tensor  # (B, 2 window) bool: which of them are really in its window
    position: int  # how many of the epoch's words (before subsampling) come before the batch


def epoch_batches(corpus: Corpus, keep: torch.Tensor, config: Word2VecConfig,
                  generator: torch.Generator) -> Iterator[Batch]:
    """One epoch: subsample the corpus, then walk through it in batches of center words.

    Windows are taken over the words that survive subsampling, so dropping a frequent word lets
    the window reach further.
    """
    kept = torch.rand(len(corpus.ids), generator=generator, dtype=torch.float64) < keep[corpus.ids]
    ids, sentence, position = corpus.ids[kept], corpus.sentence[kept], torch.nonzero(kept).squeeze(1)
    offsets = torch.cat([torch.arange(-config.window, 0), torch.arange(1, config.window + 1)])
    for start in range(0, len(ids), config.batch_size):
        center = torch.arange(start, min(start + config.batch_size, len(ids)))
        # The dynamic window: each center looks 1..window words each way, drawn uniformly, so a
        # neighbour at distance d is used with probability (window - d + 1) / window: near
        # words count more than far ones.
        reach = torch.randint(1, config.window + 1, (len(center),), generator=generator)
        around = center[:, None] + offsets
        inside = (around >= 0) & (around < len(ids)) & (offsets.abs() <= reach[:, None])
        around = around.clamp(0, len(ids) - 1)
        inside &= sentence[around] == sentence[center, None]
        yield Batch(ids[center], ids[around], inside, int(position[start]))


def negative_sampling(w_out: torch.Tensor, h: torch.Tensor, targets: torch.Tensor, noise: torch.Tensor,
                      lr: float) -> torch.Tensor:
    """Update the output vectors for one batch of predictions; return the update for the inputs.

    Row i asks "does word ``targets[i]`` go with input ``h[i]``?" (label 1) and the same for each
    noise word of ``noise[i]`` (label 0). For the score ``s = h . u`` the logistic loss
    ``-log sigmoid(s)`` (or ``-log sigmoid(-s)`` for label 0) has the derivative
    ``sigmoid(s) - label``, so one SGD step moves ``u`` by ``g h`` and ``h`` by ``g u`` with
    ``g = lr (label - sigmoid(s))`` (word2vec.c's ``g``). The update for ``h`` is computed with the
    output vectors from before this step, as word2vec.c does.
    """
    words = torch.cat([targets[:, None], noise], dim=1)  # (P, 1 + negatives)
    labels = torch.zeros(words.shape, dtype=h.dtype)
    labels[:, 0] = 1
    u = w_out[words]  # (P, 1 + negatives, dim)
    g = lr * (labels - torch.sigmoid(torch.einsum("pd,pkd->pk", h, u)))
    g[:, 1:] *= (noise != targets[:, None]).to(g.dtype)  # a noise draw of the true word is skipped
    w_out.index_add_(0, words.flatten(), (g[:, :, None] * h[:, None, :]).flatten(0, 1))
    return torch.einsum("pk,pkd->pd", g, u)


def skipgram_step(w_in: torch.Tensor, w_out: torch.Tensor, batch: Batch, draw_noise: NoiseDraw, lr: float) -> None:
    """Skip-gram: every (center, context) pair of the batch is one prediction, from the center's vector."""
    centers = batch.centers[:, None].expand_as(batch.contexts)[batch.inside]
    targets = batch.contexts[batch.inside]
    w_in.index_add_(0, centers, negative_sampling(w_out, w_in[centers], targets, draw_noise(len(centers)), lr))


def cbow_step(w_in: torch.Tensor, w_out: torch.Tensor, batch: Batch, draw_noise: NoiseDraw, lr: float) -> None:
    """CBOW: the mean of the window's vectors predicts the center; every word of the window gets
    the whole update for that mean (as in word2vec.c, where it is not divided among them)."""
    size = batch.inside.sum(dim=1)
    has = size > 0  # a center alone in its sentence has nothing to predict it from
    inside = batch.inside[has]
    h = (w_in[batch.contexts[has]] * inside[:, :, None]).sum(dim=1) / size[has, None]
    update = negative_sampling(w_out, h, batch.centers[has], draw_noise(len(h)), lr)
    w_in.index_add_(0, batch.contexts[has][inside], update[:, None, :].expand(-1, inside.shape[1], -1)[inside])


def train_word2vec(sentences: str | Iterable[str | Sequence[str]], config: Word2VecConfig | None = None,
                   quiet: bool = False) -> WordVectors:
    """Learn a vector for every word seen ``config.min_count`` times or more.

    ``sentences`` is a text, a list of texts (e.g. ``load_documents("stories")``), each split
    with :func:`tokenize_words`, or sentences that are lists of words already.
    """
    config = config or Word2VecConfig()
    corpus = encode_corpus(sentences, config.min_count)
    generator = torch.Generator().manual_seed(config.seed)
    # word2vec.c's start: small random input vectors, output vectors at zero.
    w_in = (torch.rand(len(corpus.words), config.dim, generator=generator) - 0.5) / config.dim
    w_out = torch.zeros(len(corpus.words), config.dim)
    noise_cdf = torch.from_numpy(np.cumsum(noise_distribution(corpus.counts)))
    keep = torch.from_numpy(keep_probabilities(corpus.counts, config.sample))
    step = skipgram_step if config.mode == "skipgram" else cbow_step

    def draw_noise(predictions: int) -> torch.Tensor:
        return sample_noise(noise_cdf, (predictions, config.negatives), generator)

    total = len(corpus.ids)
    threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    try:
        with progress(disable=quiet) as bar:
            task = bar.add_task(f"word2vec {config.mode}", total=config.epochs * total)
            for epoch in range(config.epochs):
                for batch in epoch_batches(corpus, keep, config, generator):
                    done = epoch * total + batch.position
                    step(w_in, w_out, batch, draw_noise, learning_rate(config, done / (config.epochs * total)))
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
