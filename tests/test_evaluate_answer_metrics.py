"""Answer scores: SQuAD's exact match and F1 by hand, ROUGE-L against rouge-score, stored keywords."""

from __future__ import annotations

import random

import pytest

from fromzero.data import load_jsonl
from fromzero.errors import InputError
from fromzero.evaluate.answer_metrics import (
    derive_keywords,
    exact_match,
    keyword_recall,
    mean_scores,
    normalize,
    rouge_l,
    rouge_tokens,
    score_answer,
    token_f1,
)

# Words that test the tokenizers' edges: case, punctuation inside and around words, numbers with
# points and commas, letters outside a-z, the Kelvin sign (which lowercases to an ASCII "k") and
# dotted capital I (which lowercases to "i" plus a combining dot).
VOCABULARY = [
    "water", "Water", "WATER", "the", "The", "a", "an", "An", "river", "Ganga", "semi-permeable",
    "don't", "Newton's", "x", "3x", "=", "15.", "3.14", "1,000", "(dilute)", "e.g.", "café", "naïve",
    "\u212a", "\u0130ndia", "x²", "—", "...", "!", "rock's", "it", "is", "data", "Data!", "\t", "\n",
]


def _random_text(rng: random.Random) -> str:
    if rng.random() < 0.08:
        return rng.choice(["", " ", "!!", "\u00e9t\u00e9"])  # no ROUGE words at all
    words = [rng.choice(VOCABULARY) for _ in range(rng.randint(1, 25))]
    return rng.choice([" ", "", "  "]).join(words)


@pytest.fixture(scope="module")
def reference_rouge():
    rouge_scorer = pytest.importorskip("rouge_score.rouge_scorer", reason="the reference ROUGE is rouge-score's")
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    return lambda prediction, reference: scorer.score(reference, prediction)["rougeL"].fmeasure


@pytest.fixture(scope="module")
def test_split():
    return load_jsonl("education_qa/test")


def test_normalize_is_squads():
    # lower -> "  the cat's   hat, an apple!  "; no punctuation -> "  the cats   hat an apple  ";
    # no articles -> "   cats   hat   apple  "; one space between words.
    assert normalize("  The Cat's   hat, AN apple!  ") == "cats hat apple"
    assert normalize("Another theory") == "another theory"  # articles only as whole words
    assert normalize("semi-permeable, 61.7") == "semipermeable 617"  # removed, not made a space


def test_exact_match_by_hand():
    assert exact_match("The Ganga.", "ganga") == 1.0
    assert exact_match("Ganga river", "Ganga") == 0.0
    assert exact_match("", "The.") == 1.0  # both normalize to ""


def test_token_f1_by_hand():
    # "cat sat on mat" (4) vs "cat on mat" (3): 3 shared; P = 3/4, R = 3/3; F = 2*(3/4)*1/(7/4) = 6/7.
    assert token_f1("the cat sat on the mat", "a cat on a mat") == pytest.approx(6 / 7)
    # [water x3] vs [water, is, wet]: water counts min(3, 1) = 1 time; P = 1/3, R = 1/3, F = 1/3.
    assert token_f1("water water water", "water is wet") == pytest.approx(1 / 3)
    assert token_f1("semi-permeable membrane", "Semipermeable membrane.") == 1.0
    assert token_f1("rivers", "mountains") == 0.0
    assert token_f1("", "the") == 1.0  # both empty after normalize
    assert token_f1("", "ganga") == 0.0 and token_f1("ganga", "") == 0.0


def test_rouge_l_by_hand_rewards_order():
    # [the, cat, sat] vs [the, cat, on, the, mat]: LCS "the cat" = 2; P = 2/3, R = 2/5;
    # F = 2*(4/15)/(16/15) = 1/2.
    assert rouge_l("the cat sat", "the cat on the mat") == pytest.approx(0.5)
    # reversed: LCS 1 of 3 words each, F = 1/3; the bag of words is the same, F1 = 1.
    assert rouge_l("c b a", "a b c") == pytest.approx(1 / 3) and token_f1("c b a", "a b c") == 1.0
    assert rouge_tokens("Semi-permeable CAFÉ 3.14") == ["semi", "permeable", "caf", "3", "14"]
    assert rouge_l("", "water") == 0.0 and rouge_l("!!", "!!") == 0.0


def test_rouge_l_equals_rouge_score_on_generated_pairs(reference_rouge):
    rng = random.Random(0)
    pairs = [(_random_text(rng), _random_text(rng)) for _ in range(300)]
    pairs += [("", ""), ("water", ""), ("", "water"), ("\u212a", "k"), ("\u0130ndia", "i india")]
    scores = [(rouge_l(p, r), reference_rouge(p, r)) for p, r in pairs]
    assert max(abs(ours - theirs) for ours, theirs in scores) < 1e-12
    assert len({round(ours, 6) for ours, _ in scores}) > 20, "the pairs reach many different scores"


def test_rouge_l_equals_rouge_score_on_the_test_answers(reference_rouge, test_split):
    rng = random.Random(1)
    for record in test_split:
        answer = record["output"]
        words = answer.split()
        shuffled = words[:]
        rng.shuffle(shuffled)
        variants = [answer, " ".join(words[: len(words) // 2]), " ".join(shuffled), answer.upper()[::-1]]
        for variant in variants:
            assert abs(rouge_l(variant, answer) - reference_rouge(variant, answer)) < 1e-12, variant


def test_derive_keywords_rule():
    reference = "Kidneys filter the blood; each kidney removes 2 wastes, like urea, and is in the body."
    # normalized: kidneys filter blood each kidney removes 2 wastes like urea and is in body;
    # "each", "like", "and" are stop words, "is"/"in" too short, "kidney" is "kidneys" less an s,
    # "2" is kept because it is a number.
    assert derive_keywords(reference) == ["kidneys", "filter", "blood", "removes", "2", "wastes", "urea", "body"]
    assert derive_keywords(reference, k=3) == ["kidneys", "filter", "blood"]
    assert derive_keywords("It is what it is.") == []
    with pytest.raises(InputError):
        derive_keywords(reference, k=0)


def test_stored_keywords_equal_the_rule(test_split):
    """The field was derived once; it must stay what derive_keywords gives, record by record."""
    for number, record in enumerate(test_split, start=1):
        assert record["keywords"] == derive_keywords(record["output"]), f"test.jsonl line {number}"
        assert len(record["keywords"]) >= 5, f"test.jsonl line {number}"


def test_keyword_recall_by_hand():
    keywords = ["osmosis", "water", "membrane", "kidneys"]
    # osmosis yes, water yes ("Water," normalizes to "water"), membrane no, kidneys yes as "kidney": 3/4.
    assert keyword_recall("Osmosis moves Water, as a kidney does.", keywords) == 0.75
    assert keyword_recall("Membranes!", ["membrane"]) == 1.0  # one final s either way
    assert keyword_recall("boxes", ["box"]) == 0.0  # other plurals do not count
    assert keyword_recall("", ["water"]) == 0.0
    with pytest.raises(InputError):
        keyword_recall("water", [])
    with pytest.raises(InputError):
        keyword_recall("water", ["water cycle"])


def test_score_answer_and_mean_scores():
    perfect = score_answer("Patna.", "Patna", ["patna"])
    assert perfect == {"exact_match": 1.0, "f1": 1.0, "rouge_l": 1.0, "keyword_recall": 1.0}
    wrong = score_answer("Bhubaneswar", "Patna", ["patna"])
    assert wrong == {"exact_match": 0.0, "f1": 0.0, "rouge_l": 0.0, "keyword_recall": 0.0}
    assert mean_scores([perfect, wrong, wrong, wrong]) == {name: 0.25 for name in perfect}
    with pytest.raises(InputError):
        mean_scores([])
    with pytest.raises(InputError):
        mean_scores([perfect, {"f1": 1.0}])
