"""The n-gram model: exact probabilities on tiny corpora worked out by hand, and its guarantees."""

from __future__ import annotations

import json
import math
import random

import pytest

from fromzero.classic.ngram import NGramModel
from fromzero.errors import CorruptFileError, InputError, MissingFileError

# "abacab": bigrams ab, ba, ac, ca, ab  ->  a->{b:2, c:1}, b->{a:1}, c->{a:1};  unigrams a:3 b:2 c:1
TOY = "abacab"


def test_counts_to_unsmoothed_probabilities():
    model = NGramModel(2, "none").fit(TOY)
    assert model.count("ab") == 2 and model.count("a") == 3 and model.count("bb") == 0
    assert model.prob("a", "b") == pytest.approx(2 / 3)
    assert model.prob("a", "c") == pytest.approx(1 / 3)
    assert model.prob("a", "a") == 0.0
    assert model.prob("b", "a") == 1.0
    assert model.prob("", "a") == pytest.approx(3 / 6)  # empty context: the unigram estimate
    assert model.prob("xyzb", "a") == 1.0  # only the last order-1 tokens count
    assert model.distribution("a") == pytest.approx({"a": 0, "b": 2 / 3, "c": 1 / 3})


def test_add_k_smoothing():
    model = NGramModel(2, "add-k", k=1).fit(TOY)
    # (c(h w) + k) / (c(h) + k V), V = 3
    assert model.prob("a", "b") == pytest.approx((2 + 1) / (3 + 3))
    assert model.prob("a", "a") == pytest.approx((0 + 1) / (3 + 3))
    assert model.prob("b", "a") == pytest.approx((1 + 1) / (1 + 3))
    assert model.prob("a", "z") == 0.0  # outside the vocabulary
    half = NGramModel(2, "add-k", k=0.5).fit(TOY)
    assert half.prob("c", "b") == pytest.approx(0.5 / (1 + 1.5))


def test_kneser_ney_bigram_by_hand():
    model = NGramModel(2, "kneser-ney").fit(TOY)
    # Bigram counts-of-counts: n1 = 3 (ba, ac, ca), n2 = 1 (ab)  ->  D2 = 3 / (3 + 2) = 0.6.
    assert model.discounts[("raw", 2)] == pytest.approx(0.6)
    # Continuation counts N1+(. w): a follows b and c -> 2; b follows a -> 1; c follows a -> 1.
    assert model.continuation[1].table[()] == {"a": 2, "b": 1, "c": 1}
    # Their counts-of-counts: n1 = 2, n2 = 1 -> D1 = 2 / (2 + 2) = 0.5.
    assert model.discounts[("continuation", 1)] == pytest.approx(0.5)
    # P1(w) = max(N(.w) - 0.5, 0) / 4 + 0.5 * 3/4 * 1/3  ->  a: 0.5, b: 0.25, c: 0.25.
    # P(b|a) = (2 - 0.6)/3 + 0.6 * 2/3 * P1(b) = 1.4/3 + 0.1
    assert model.prob("a", "b") == pytest.approx(1.4 / 3 + 0.1)
    assert model.prob("a", "c") == pytest.approx(0.4 / 3 + 0.1)
    assert model.prob("a", "a") == pytest.approx(0.4 * 0.5)
    # P(a|b) = (1 - 0.6)/1 + 0.6 * 1/1 * P1(a) = 0.4 + 0.3
    assert model.prob("b", "a") == pytest.approx(0.7)
    assert model.prob("b", "c") == pytest.approx(0.6 * 0.25)
    # A context never seen hands all its mass to the lower order.
    assert model.prob("z", "a") == pytest.approx(0.5)
    # Empty context = the top order of a unigram model: raw counts 3, 2, 1, D = 1/(1 + 2) = 1/3.
    assert model.prob("", "c") == pytest.approx((1 - 1 / 3) / 6 + (1 / 3) * 3 / 6 / 3)


def test_kneser_ney_trigram_by_hand_with_fixed_discount():
    model = NGramModel(3, "kneser-ney", discount=0.5).fit(TOY)
    # Trigrams aba, bac, aca, cab. Each distinct one adds 1 to the continuation count of its
    # last two tokens: (b,a), (a,c), (c,a), (a,b)  ->  a->{c:1, b:1}, b->{a:1}, c->{a:1}.
    assert model.continuation[2].table == {("a",): {"c": 1, "b": 1}, ("b",): {"a": 1}, ("c",): {"a": 1}}
    # P1: a 0.5, b 0.25, c 0.25 (as in the bigram test, D = 0.5).
    # P2(.|b) = b->{a:1}: a: 0.5 + 0.5 * 0.5 = 0.75; b, c: 0.5 * 0.25 = 0.125.
    # P3(a|ab) = (1 - 0.5)/1 + 0.5 * 1/1 * P2(a|b) = 0.5 + 0.375
    assert model.prob("ab", "a") == pytest.approx(0.875)
    assert model.prob("ab", "c") == pytest.approx(0.0625)
    # P2(b|a) = (1 - 0.5)/2 + 0.5 * 2/2 * P1(b) = 0.375;  P3(b|ca) = 0.5 + 0.5 * 0.375
    assert model.prob("ca", "b") == pytest.approx(0.6875)
    # Unseen trigram context "cc" backs off to P2(a|c) = 0.5 + 0.5 * P1(a) = 0.75.
    assert model.prob("cc", "a") == pytest.approx(0.75)


@pytest.fixture(scope="module")
def shakespeare_text(tinyshakespeare) -> str:
    return tinyshakespeare.read_text(encoding="utf-8")[:60_000]


def test_kneser_ney_is_a_distribution_on_real_text(shakespeare_text):
    model = NGramModel(4, "kneser-ney").fit(shakespeare_text[:50_000])
    rng = random.Random(0)
    contexts = ["", "e", "th", "the", "qzx", "\n\n"] + [
        shakespeare_text[i : i + 3] for i in rng.sample(range(50_000, 59_000), 10)
    ]
    for context in contexts:
        dist = model.distribution(context)
        assert math.fsum(dist.values()) == pytest.approx(1.0, abs=1e-12)
        assert min(dist.values()) > 0  # every vocabulary token keeps some probability
        for token in rng.sample(model.vocab, 5):
            assert dist[token] == pytest.approx(model.prob(context, token), rel=1e-12)


def test_short_context_matches_the_lower_order_model(shakespeare_text):
    text = shakespeare_text[:20_000]
    five, two = NGramModel(5).fit(text), NGramModel(2).fit(text)
    for context, token in [("e", " "), ("t", "h"), ("Q", "u"), ("z", "z")]:
        assert five.prob(context, token) == pytest.approx(two.prob(context, token), rel=1e-12)


def test_higher_order_kneser_ney_has_lower_perplexity(shakespeare_text):
    train, val = shakespeare_text[:50_000], shakespeare_text[50_000:]
    scores = {n: NGramModel(n).fit(train, vocab=set(shakespeare_text)).perplexity(val) for n in (1, 2, 3)}
    assert scores[3] < scores[2] < scores[1] < len(set(shakespeare_text))


def test_perplexity_by_hand_and_infinite_when_unsmoothed():
    model = NGramModel(2, "none").fit(TOY)
    # P(a) P(b|a) P(a|b) P(c|a) P(a|c) P(b|a) = 1/2 * 2/3 * 1 * 1/3 * 1 * 2/3
    probs = [1 / 2, 2 / 3, 1, 1 / 3, 1, 2 / 3]
    expected = math.exp(-sum(math.log(p) for p in probs) / 6)
    assert model.perplexity(TOY) == pytest.approx(expected)
    evaluation = model.evaluate("abba")
    assert evaluation.perplexity == math.inf and evaluation.n_zero == 1  # only "bb" is unseen
    assert evaluation.first_zero == (("b",), "b")
    assert "probability 0" in evaluation.explain() and "kneser-ney" in evaluation.explain()
    assert NGramModel(2, "kneser-ney").fit(TOY).perplexity("abba") < math.inf
    unknown = NGramModel(2, "kneser-ney").fit(TOY).evaluate("abz")
    assert unknown.perplexity == math.inf and unknown.n_unknown == 1
    assert "not in the model's vocabulary" in unknown.explain()


def test_sampling_is_reproducible_and_backs_off():
    model = NGramModel(3, "none").fit("the cat sat on the mat. the dog sat on the log.")
    a = model.sample("the ", 40, seed=1)
    assert a == model.sample("the ", 40, seed=1)
    assert a != model.sample("the ", 40, seed=2)
    assert set(a) <= set(model.vocab)
    # "zq" was never seen: the model backs off to the empty context instead of failing.
    assert model.backoff("zq") == ()
    assert model.backoff("xe ") == ("e", " ")
    assert len(model.sample("zq", 10, seed=0)) == 10
    # Temperature 0 is greedy: always the likeliest next token.
    dist = model.distribution("th")
    assert model.sample("th", 1, temperature=0) == [max(dist, key=dist.get)]
    # A tiny temperature is nearly greedy and must not underflow every weight to 0.
    assert model.sample("th", 1, temperature=0.001, seed=0) == ["e"]
    assert len(model.sample("th", 50, temperature=0.001, seed=0)) == 50


def test_tables_as_data():
    model = NGramModel(2, "none").fit(TOY)
    assert model.top_bigrams(2)[0] == (("a", "b"), 2)
    assert len(model.top_bigrams(10)) == 4
    matrix = model.probability_matrix(["a", "b", "c"])
    assert matrix[0] == pytest.approx([0, 2 / 3, 1 / 3])
    assert [sum(row) for row in matrix] == pytest.approx([1, 1, 1])
    followers = model.followers("a", k=2)
    assert followers == [("b", 2, pytest.approx(2 / 3)), ("c", 1, pytest.approx(1 / 3))]
    with pytest.raises(InputError, match="order >= 2"):
        NGramModel(1).fit(TOY).top_bigrams()


def test_token_ids_work_like_characters():
    ids = [5, 7, 5, 9, 5, 7]  # "abacab" spelled with ids
    chars = NGramModel(3).fit(TOY)
    tokens = NGramModel(3).fit(ids)
    assert tokens.prob([7, 5], 9) == pytest.approx(chars.prob("ba", "c"))
    assert all(isinstance(t, int) for t in tokens.sample([5], 5, seed=0))


def test_save_load_round_trip(tmp_path):
    for data in (TOY * 3, [5, 7, 5, 9, 5, 7, 300]):
        model = NGramModel(3, "kneser-ney").fit(data)
        path = model.save(tmp_path / "model.json")
        loaded = NGramModel.load(path)
        assert loaded.vocab == model.vocab and loaded.order == 3
        for context in (data[:2], data[1:3], data[:0]):
            assert loaded.distribution(context) == model.distribution(context)
    assert not list(tmp_path.glob("*.tmp"))


def test_load_errors(tmp_path):
    with pytest.raises(MissingFileError):
        NGramModel.load(tmp_path / "absent.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(CorruptFileError):
        NGramModel.load(tmp_path / "bad.json")
    (tmp_path / "other.json").write_text(json.dumps({"format": "something else"}))
    with pytest.raises(CorruptFileError):
        NGramModel.load(tmp_path / "other.json")


@pytest.mark.parametrize(
    "make",
    [
        lambda: NGramModel(0),
        lambda: NGramModel(-2),
        lambda: NGramModel(2, "witten-bell"),
        lambda: NGramModel(2, "add-k", k=0),
        lambda: NGramModel(2).fit(""),
        lambda: NGramModel(2).fit(TOY).perplexity(""),
        lambda: NGramModel(2).prob("a", "b"),
        lambda: NGramModel(2).fit(TOY, vocab="ab"),
        lambda: NGramModel(2).fit(TOY).sample("a", -1),
    ],
)
def test_bad_arguments_raise_input_error(make):
    with pytest.raises(InputError):
        make()


def test_fit_memory_estimate_bounds_the_real_peak():
    """The estimate a fit is refused by is an upper bound, also when every m-gram is new."""
    import tracemalloc

    from fromzero.classic.ngram import estimate_fit_bytes

    rng = random.Random(0)
    for text in ("".join(rng.choice("abcdefghijklmnopqrstuvwxyz ") for _ in range(8_000)), TOY * 1500):
        for order in (2, 8):
            tracemalloc.start()
            NGramModel(order).fit(text)
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            assert peak <= estimate_fit_bytes(order, len(text), len(set(text))), (order, peak)


def test_fit_too_big_for_memory_is_refused_before_counting(monkeypatch):
    import fromzero.classic.ngram as ngram

    rng = random.Random(0)
    text = "".join(rng.choice("abcdefgh") for _ in range(2_000))
    need = ngram.estimate_fit_bytes(40, len(text), 8)
    monkeypatch.setattr(ngram, "memory_budget", lambda: need - 1)
    with pytest.raises(InputError, match=r"counting the 40-grams of 2,000 tokens could take up to .* GB of memory"):
        NGramModel(40).fit(text)
    monkeypatch.setattr(ngram, "memory_budget", lambda: need)
    assert NGramModel(40).fit(text).order == 40


def test_unknown_tokens_are_explained_in_words_a_command_line_user_can_act_on():
    evaluation = NGramModel(2, "add-k").fit(TOY).evaluate("abz")
    assert evaluation.n_unknown == 1
    assert "train it on text that includes them" in evaluation.explain() and "fit" not in evaluation.explain()


def test_kneser_ney_keeps_a_floor_for_a_token_no_training_context_continued():
    # every character here follows several distinct characters, so no continuation count is 1 and
    # the estimated discount n1 / (n1 + 2 n2) of the lowest order would be 0
    text = "abcabcacbbacbca" * 4
    model = NGramModel(2, "kneser-ney").fit(text, vocab=list("abcz"))
    assert model.prob("a", "z") > 0 and math.isfinite(model.perplexity("abz"))
    assert sum(model.distribution("a").values()) == pytest.approx(1.0)
