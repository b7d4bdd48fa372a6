"""Scores for a generated answer against a reference answer: exact match, F1, ROUGE-L, keyword recall.

Answer loss (:func:`fromzero.evaluate.qa.answer_loss`) says how likely the model finds the reference; these
say how close what it actually *writes* comes to it. Each rewards something different:

* **exact match**: the same answer, word for word, after :func:`normalize`. Strict: right for short
  answers ("Patna"), nearly always 0 for a paragraph.
* **F1**: the words the two answers share, counted as a bag (order ignored): partial credit.
* **ROUGE-L**: the longest run of words the two share *in the same order* (not necessarily next to
  each other), so a shuffled answer scores lower than the right words in the right order.
* **keyword recall**: the share of the reference's content words (:func:`derive_keywords`) that
  the answer mentions, however long it is and however else it is worded.

All of them compare words, not meaning: a correct answer in other words scores low, and a wrong
one that reuses the reference's words can score high. Read the answers too.

Exact match and F1 are SQuAD's (Rajpurkar et al., 2016, its evaluation script); ROUGE-L is written
here and gives the same numbers as the ``rouge-score`` package (``RougeScorer(["rougeL"])``, no
stemming), which the tests check.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from typing import Mapping, Sequence

from fromzero.errors import InputError

_PUNCTUATION = set(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_ROUGE_TOKEN = re.compile(r"[a-z0-9]+")

# Function words, and a few verbs that fit any answer (make, use, get, let, put, like), that say
# nothing about what an answer is about; written as :func:`normalize` leaves them (no apostrophes:
# "don't" is "dont"). Words under three letters need no entry: the keyword rule drops them anyway,
# and normalize has already removed a, an and the.
STOP_WORDS = frozenset("""
    about above after again against all also although among and another any are arent around because
    been before being below between both but can cannot cant could couldnt did didnt does doesnt
    doing done dont down during each either else even ever every few for from further had has hasnt
    have havent having her here hers herself him himself his how however isnt its itself just many
    may more most much must neither nor not off once only onto other others our ours ourselves out
    over own same she should shouldnt since some such than that thats their theirs them themselves
    then there therefore these they this those though through thus too under unless until upon very
    was wasnt were werent what when where whether which while who whom whose why will with within
    without wont would wouldnt yet you your yours yourself get gets got let lets like make makes
    made put puts use uses used using
""".split())


def normalize(text: str) -> str:
    """SQuAD's answer normalisation: lowercase, drop punctuation and the articles a/an/the, one space.

    So "The Ganga." and "ganga" count as the same answer. Punctuation is removed, not replaced by a
    space, as SQuAD does: "semi-permeable" becomes "semipermeable" and "61.7" becomes "617".
    """
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(prediction: str, reference: str) -> float:
    """1.0 when the two answers are the same after :func:`normalize`, else 0.0."""
    return float(normalize(prediction) == normalize(reference))


def token_f1(prediction: str, reference: str) -> float:
    """SQuAD's token F1: the harmonic mean of the shares of each answer's words found in the other.

    Words are :func:`normalize`'s tokens, counted as a bag: a word the prediction repeats scores
    only as often as the reference has it. Two empty answers agree (1.0); one empty one shares
    nothing (0.0).
    """
    predicted, expected = normalize(prediction).split(), normalize(reference).split()
    if not predicted or not expected:
        return float(predicted == expected)
    shared = sum((Counter(predicted) & Counter(expected)).values())
    if shared == 0:
        return 0.0
    precision, recall = shared / len(predicted), shared / len(expected)
    return 2 * precision * recall / (precision + recall)


def rouge_tokens(text: str) -> list[str]:
    """ROUGE's words: lowercase, then every run of ASCII letters and digits (all else separates).

    This is ``rouge-score``'s tokenizer without stemming, so "Semi-permeable" is two words,
    "semi" and "permeable", and letters outside a-z ("é") separate words as punctuation does.
    """
    return _ROUGE_TOKEN.findall(text.lower())


def _lcs_length(first: Sequence[str], second: Sequence[str]) -> int:
    """Length of the longest common subsequence, by dynamic programming one row at a time.

    ``row[j]`` is the LCS length of the words of ``first`` seen so far and ``second[:j]``.
    """
    row = [0] * (len(second) + 1)
    for word in first:
        previous = row[:]
        for j, other in enumerate(second, start=1):
            row[j] = previous[j - 1] + 1 if word == other else max(previous[j], row[j - 1])
    return row[-1]


def rouge_l(prediction: str, reference: str) -> float:
    """ROUGE-L F-measure: from the longest common subsequence of the two answers' words.

    Precision is its length over the prediction's word count, recall its length over the
    reference's; F is their harmonic mean (0.0 when either answer has no words). Words in the same
    order score, even with other words between them; words out of order do not.
    """
    predicted, expected = rouge_tokens(prediction), rouge_tokens(reference)
    if not predicted or not expected:
        return 0.0
    common = _lcs_length(expected, predicted)
    precision, recall = common / len(predicted), common / len(expected)
    return 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0


def _same_word(first: str, second: str) -> bool:
    """Equal, or equal but for a final "s" ("kidney" and "kidneys"); other plurals do not count."""
    return first == second or first + "s" == second or second + "s" == first


def derive_keywords(reference: str, k: int = 10) -> list[str]:
    """The content words of ``reference`` that a correct answer should mention: at most ``k``.

    The rule: take :func:`normalize`'s tokens in order; drop the words in :data:`STOP_WORDS` and
    words shorter than three characters, except numbers (a token with a digit is kept: "5" is the
    answer to a sum); keep each word once, at its first occurrence, and skip a word that differs
    from one already kept only by a final "s"; stop after ``k``. The first words are kept because
    an answer states its point first, and a reference's first sentence is usually the direct answer.
    """
    if k < 1:
        raise InputError(f"k must be at least 1 keyword, got {k}")
    keywords: list[str] = []
    for word in normalize(reference).split():
        content = word not in STOP_WORDS and (len(word) >= 3 or any(ch.isdigit() for ch in word))
        if content and not any(_same_word(word, kept) for kept in keywords):
            keywords.append(word)
            if len(keywords) == k:
                break
    return keywords


def keyword_recall(prediction: str, keywords: Sequence[str]) -> float:
    """The share of ``keywords`` that the prediction mentions, each a single word.

    A keyword counts when one of the prediction's :func:`normalize` tokens equals it, or equals it
    but for a final "s" (the answer says "kidney", the keyword is "kidneys"). No keywords at all is
    an error rather than a perfect score, so data without keywords cannot pass unnoticed.
    """
    if not keywords:
        raise InputError("no keywords to look for: give at least one (derive_keywords(reference) makes them)")
    words = set(normalize(prediction).split())
    found = 0
    for keyword in keywords:
        normal = normalize(keyword)
        if len(normal.split()) != 1:
            raise InputError(f"keyword {keyword!r} should be a single word; normalized it is {normal!r}")
        found += any(_same_word(normal, word) for word in words)
    return found / len(keywords)


def score_answer(prediction: str, reference: str, keywords: Sequence[str]) -> dict[str, float]:
    """All four scores of one answer: ``exact_match``, ``f1``, ``rouge_l`` and ``keyword_recall``."""
    return {
        "exact_match": exact_match(prediction, reference),
        "f1": token_f1(prediction, reference),
        "rouge_l": rouge_l(prediction, reference),
        "keyword_recall": keyword_recall(prediction, keywords),
    }


def mean_scores(scores: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """The mean of each score over answers (every answer counts the same), e.g. of :func:`score_answer`'s."""
    if not scores:
        raise InputError("no scores to average: score at least one answer")
    names = list(scores[0])
    for number, score in enumerate(scores, start=1):
        if set(score) != set(names):
            raise InputError(f"answer {number} has the scores {sorted(score)}, the first has {sorted(names)}")
    return {name: sum(score[name] for score in scores) / len(scores) for name in names}
