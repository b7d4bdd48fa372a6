"""word2vec: planted neighbours are found, training is reproducible, the sampling formulas are
word2vec.c's, files round-trip (and load in gensim), and every user mistake is one clear line."""

import dataclasses
import random

import numpy as np
import pytest
import torch

from fromzero.embeddings.word2vec import (
    VECTORS_FILE,
    VOCAB_FILE,
    Word2VecConfig,
    WordVectors,
    encode_corpus,
    keep_probabilities,
    learning_rate,
    noise_distribution,
    sample_noise,
    tokenize_words,
    train_word2vec,
)
from fromzero.errors import CorruptFileError, InputError

# Each sentence holds one word of a pair and four context words of the pair's topic: the two
# words of a pair never meet, but share every context, so they should be each other's nearest.
TOPICS = [(["king", "queen"], ["crown", "throne", "palace", "royal", "rules", "castle"]),
          (["apple", "banana"], ["eat", "sweet", "fruit", "ripe", "peel", "juice"]),
          (["car", "truck"], ["drive", "road", "wheels", "engine", "fast", "garage"])]
TOY = Word2VecConfig(dim=20, min_count=1, sample=0, epochs=5)


def planted_corpus(n: int = 1500, seed: int = 0) -> list[list[str]]:
    rng = random.Random(seed)
    sentences = []
    for _ in range(n):
        pair, contexts = rng.choice(TOPICS)
        sentence = [rng.choice(pair), *rng.sample(contexts, 4)]
        rng.shuffle(sentence)
        sentences.append(sentence)
    return sentences


@pytest.fixture(scope="module")
def toy_vectors() -> WordVectors:
    return train_word2vec(planted_corpus(), TOY, quiet=True)


@pytest.mark.parametrize("mode", ["skipgram", "cbow"])
def test_planted_pairs_are_nearest_neighbours(mode):
    config = dataclasses.replace(TOY, mode=mode, lr=None)  # lr None: the mode's own default
    vectors = train_word2vec(planted_corpus(), config, quiet=True)
    for (a, b), contexts in TOPICS:
        assert vectors.most_similar(a, k=1)[0][0] == b
        assert vectors.most_similar(b, k=1)[0][0] == a
        others = [w for (pair, _) in TOPICS if pair != [a, b] for w in pair]
        assert vectors.similarity(a, b) > max(vectors.similarity(a, other) for other in others) + 0.3


def test_most_similar_and_analogy_follow_3cosadd(toy_vectors):
    unit = toy_vectors.vectors / np.linalg.norm(toy_vectors.vectors, axis=1, keepdims=True)
    idx = toy_vectors.index
    query = unit[idx["queen"]] + unit[idx["apple"]] - unit[idx["king"]]
    cosines = unit @ (query / np.linalg.norm(query))
    ranked = [toy_vectors.words[i] for i in np.argsort(-cosines)]
    expected = [w for w in ranked if w not in ("queen", "apple", "king")]
    got = toy_vectors.most_similar(positive=["queen", "apple"], negative=["king"], k=5)
    assert [w for w, _ in got] == expected[:5]
    assert toy_vectors.analogy("king", "queen", "apple") == expected[0]
    everything = toy_vectors.most_similar("king", k=30)  # more than there are: all but the query
    assert sorted(w for w, _ in everything) == sorted(w for w in toy_vectors.words if w != "king")
    scores = [s for _, s in everything]
    assert scores == sorted(scores, reverse=True)


def test_same_seed_same_vectors_other_seed_other_vectors():
    corpus = planted_corpus(300)
    config = Word2VecConfig(dim=8, min_count=1, epochs=2)
    first = train_word2vec(corpus, config, quiet=True)
    again = train_word2vec(corpus, config, quiet=True)
    other = train_word2vec(corpus, Word2VecConfig(dim=8, min_count=1, epochs=2, seed=1), quiet=True)
    assert np.array_equal(first.vectors, again.vectors)
    assert not np.allclose(first.vectors, other.vectors)


def test_vocabulary_min_count_and_deterministic_ties():
    corpus = encode_corpus([["b", "a", "c", "a"], ["c", "b", "d"]], min_count=2)
    assert corpus.words == ["a", "b", "c"]  # all seen twice: alphabetical; "d" (once) dropped
    assert corpus.counts.tolist() == [2, 2, 2]
    assert corpus.ids.tolist() == [1, 0, 2, 0, 2, 1]
    assert corpus.sentence.tolist() == [0, 0, 0, 0, 1, 1]


def test_tokenize_words_rule():
    text = "The cat's hat. It's 3.5 metres!\n'Hello,' said Tom_2 — don't"
    assert tokenize_words(text) == [["the", "cat's", "hat"], ["it's", "3", "5", "metres"],
                                    ["hello", "said", "tom", "2", "don't"]]
    assert tokenize_words("...\n\n") == []
    vectors = train_word2vec("a b a b. b a", Word2VecConfig(dim=4, min_count=1, epochs=1), quiet=True)
    assert vectors.words == ["a", "b"] and vectors.counts == [3, 3]


def test_noise_distribution_is_unigram_to_the_075():
    counts = np.array([1000, 100, 10, 1])
    expected = counts ** 0.75 / (counts ** 0.75).sum()
    np.testing.assert_allclose(noise_distribution(counts), expected, rtol=1e-12)
    cdf = torch.from_numpy(np.cumsum(expected))
    draws = sample_noise(cdf, (200_000,), torch.Generator().manual_seed(0))
    frequencies = np.bincount(draws.numpy(), minlength=4) / len(draws)
    np.testing.assert_allclose(frequencies, expected, atol=0.005)


def test_subsampling_keep_probability_is_word2vecs_formula():
    # 1000 words; with t = 1e-3 each share f = count / 1000 gives f / t = count, so
    # (sqrt(f / t) + 1) * t / f = (sqrt(count) + 1) / count: worked out by hand below.
    keep = keep_probabilities([900, 64, 16, 15, 4, 1], 1e-3)
    np.testing.assert_allclose(keep[[0, 1, 2, 4]], [31 / 900, 9 / 64, 5 / 16, 3 / 4], rtol=1e-12)
    assert keep[5] == 1.0  # (1 + 1) / 1 = 2, capped: a word this rare is always kept
    assert keep_probabilities([900, 100], 0).tolist() == [1.0, 1.0]


def test_learning_rate_decays_linearly_to_min_lr():
    config = Word2VecConfig(lr=0.025, min_lr=0.0001)
    assert learning_rate(config, 0.0) == 0.025
    assert learning_rate(config, 1.0) == pytest.approx(0.0001)
    assert learning_rate(config, 0.5) == pytest.approx((0.025 + 0.0001) / 2)
    assert Word2VecConfig(mode="cbow").lr == 0.05 and Word2VecConfig().lr == 0.025


def test_save_load_round_trip(toy_vectors, tmp_path):
    toy_vectors.save(tmp_path / "wv")
    loaded = WordVectors.load(tmp_path / "wv")
    assert loaded.words == toy_vectors.words and loaded.counts == toy_vectors.counts
    assert np.array_equal(loaded.vectors, toy_vectors.vectors) and loaded.vectors.dtype == np.float32
    assert loaded.most_similar("king", k=3) == toy_vectors.most_similar("king", k=3)


def test_damaged_files_are_one_line_errors(toy_vectors, tmp_path):
    toy_vectors.save(tmp_path)
    data = (tmp_path / VECTORS_FILE).read_bytes()
    (tmp_path / VECTORS_FILE).write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptFileError, match="truncated or corrupt"):
        WordVectors.load(tmp_path)
    toy_vectors.save(tmp_path)
    (tmp_path / VOCAB_FILE).write_text('{"format": "fromzero-word2vec/1", "words": [', encoding="utf-8")
    with pytest.raises(CorruptFileError, match="not valid JSON"):
        WordVectors.load(tmp_path)
    (tmp_path / VOCAB_FILE).write_text('{"format": "fromzero-word2vec/1", "dim": 20, "words": ["a"], "counts": [1]}',
                                       encoding="utf-8")
    with pytest.raises(CorruptFileError, match="lists 1 words"):
        WordVectors.load(tmp_path)


def test_word2vec_text_format_loads_in_gensim(toy_vectors, tmp_path):
    keyed_vectors = pytest.importorskip("gensim.models").KeyedVectors
    path = tmp_path / "vectors.txt"
    toy_vectors.save_word2vec_format(path)
    assert path.read_text(encoding="utf-8").splitlines()[0] == f"{len(toy_vectors.words)} 20"
    theirs = keyed_vectors.load_word2vec_format(str(path), binary=False)
    assert list(theirs.index_to_key) == toy_vectors.words
    np.testing.assert_allclose(theirs.vectors, toy_vectors.vectors, atol=1e-6, rtol=0)
    for query in ({"positive": ["king"]}, {"positive": ["queen", "apple"], "negative": ["king"]}):
        ours = toy_vectors.most_similar(**query, k=5)
        gensims = theirs.most_similar(**query, topn=5)
        assert [w for w, _ in ours] == [w for w, _ in gensims]
        np.testing.assert_allclose([s for _, s in ours], [s for _, s in gensims], atol=1e-5)


@pytest.mark.parametrize("field, value", [("dim", 0), ("window", 0), ("negatives", 0), ("min_count", 0),
                                          ("epochs", 0), ("batch_size", 0), ("threads", 0), ("dim", 2.5),
                                          ("lr", 0), ("lr", float("nan")), ("min_lr", -1), ("min_lr", 1.0),
                                          ("sample", -1e-3), ("mode", "glove"), ("seed", "x")])
def test_bad_config_names_the_field(field, value):
    with pytest.raises(InputError, match=rf"^{field} "):
        Word2VecConfig(**{field: value})


@pytest.mark.parametrize("corpus", ["", "  ...  \n", [], [[]], ["", "!?"]])
def test_empty_corpus(corpus):
    with pytest.raises(InputError, match="corpus is empty"):
        train_word2vec(corpus, quiet=True)


def test_vocabulary_empty_after_min_count():
    with pytest.raises(InputError, match=r"3 distinct words, the most frequent occurs 2 times\); lower --min-count"):
        train_word2vec([["a", "b", "a", "c"]], Word2VecConfig(min_count=3), quiet=True)


def test_bad_sentences_and_unknown_words(toy_vectors, tmp_path):
    with pytest.raises(InputError, match="list of words"):
        train_word2vec([["a", 3]], quiet=True)
    with pytest.raises(InputError, match="'prince' is not in the vocabulary"):
        toy_vectors.most_similar("prince")
    with pytest.raises(InputError, match="'duke' is not in the vocabulary"):
        toy_vectors.most_similar(positive=["king"], negative=["duke"])
    with pytest.raises(InputError, match="'pear' is not in the vocabulary"):
        toy_vectors.similarity("apple", "pear")
    with pytest.raises(InputError, match="'man' is not in the vocabulary"):
        toy_vectors.analogy("man", "king", "queen")
    with pytest.raises(InputError, match="at least one word"):
        toy_vectors.most_similar()
    with pytest.raises(InputError, match="k must be"):
        toy_vectors.most_similar("king", k=0)
    spaced = WordVectors(["new york"], np.ones((1, 2)), [1])
    with pytest.raises(InputError, match="'new york' cannot be written"):
        spaced.save_word2vec_format(tmp_path / "v.txt")


def test_divergence_is_reported_not_returned_as_nan():
    with pytest.raises(InputError, match="training diverged.*lower lr"):
        train_word2vec(planted_corpus(), Word2VecConfig(dim=20, min_count=1, sample=0, epochs=20, lr=5.0,
                                                        batch_size=256), quiet=True)


@pytest.mark.parametrize("mode", ["skipgram", "cbow"])
def test_neighbours_agree_with_gensim_as_much_as_gensim_agrees_with_itself(mode):
    """Same corpus and settings: our top-10 neighbours overlap gensim's about as much as two gensim
    runs with different seeds overlap each other (both about 0.43 on the stories; random ~0.01)."""
    word2vec = pytest.importorskip("gensim.models").Word2Vec
    from fromzero.data.loading import load_documents

    sentences = [s for document in load_documents("stories") for s in tokenize_words(document)]
    config = Word2VecConfig(mode=mode)
    ours = train_word2vec(sentences, config, quiet=True)
    theirs = [word2vec(sentences, sg=int(mode == "skipgram"), alpha=config.lr, workers=1, seed=seed).wv
              for seed in (1, 2)]
    words = [w for w in ours.words[50:150] if w in theirs[0].key_to_index]  # frequent, not the stopwords

    def overlap(a, b) -> float:
        return float(np.mean([len(set(a(w)) & set(b(w))) / 10 for w in words]))

    def gensim_top(vectors):
        return lambda w: [x for x, _ in vectors.most_similar(w, topn=10)]

    between_gensims = overlap(gensim_top(theirs[0]), gensim_top(theirs[1]))
    ours_vs_gensim = overlap(lambda w: [x for x, _ in ours.most_similar(w, k=10)], gensim_top(theirs[0]))
    assert between_gensims > 0.3
    assert ours_vs_gensim > 0.7 * between_gensims
