"""The second edition of the bundled corpora: what fine-tuning and evaluation numbers rely on.

- DPO on ``preferences`` followed by scores on the held-out ``education_qa`` test split must not
  score questions the model was trained on, so no preference prompt or chosen answer may
  duplicate a test question or answer (the same exact and near-duplicate checks as
  :func:`fromzero.data.deduplicate`).
- If ``chosen`` were nearly always the longer answer, DPO could learn "longer is better"
  instead of "correct is better", so each kind of flaw has long rejected answers too.
- Results name the corpus version they used, so every data card states one.
"""

from __future__ import annotations

import re
from collections import defaultdict

import pytest

from fromzero.data import CORPORA, deduplicate, load_jsonl
from fromzero.data.bundled import card_path

MIN_SHARE_REJECTED_LONGER = 0.40
VERSION_LINE = re.compile(r"^Version: (\d+) \((\d{4}-\d{2}-\d{2})\)$", re.MULTILINE)
LENGTH_ROW = re.compile(r"^\| `(\w+)` \| (\d+) \| (\d+\.\d) \| (\d+\.\d) \| (\d+) \(\d+%\) \|$", re.MULTILINE)


def _words(text: str) -> int:
    return len(text.split())


def leaks(pairs: list[dict], test: list[dict]) -> list[tuple[str, str]]:
    """(preference text, test text) for every prompt or chosen answer that duplicates, exactly or
    nearly, a test question or answer.

    The test texts go first, so :func:`deduplicate` (which keeps first occurrences and checks
    earlier documents in order) reports each leaking preference text against a test text.
    """
    test_texts = [text for r in test for text in ("\n".join(filter(None, (r["instruction"], r["input"]))), r["output"])]
    texts = test_texts + [pair[field] for pair in pairs for field in ("prompt", "chosen")]
    result = deduplicate(texts)
    removed = result.exact_duplicates + [(index, kept) for index, kept, _ in result.near_duplicates]
    return [(texts[index], texts[kept]) for index, kept in removed if index >= len(test_texts) > kept]


def length_stats(pairs: list[dict]) -> dict[str, tuple[int, float, float, int]]:
    """Per flaw: (pairs, mean words in chosen, mean words in rejected, pairs whose rejected is longer)."""
    by_flaw = defaultdict(list)
    for pair in pairs:
        by_flaw[pair["flaw"]].append((_words(pair["chosen"]), _words(pair["rejected"])))
    return {
        flaw: (
            len(lengths),
            sum(chosen for chosen, _ in lengths) / len(lengths),
            sum(rejected for _, rejected in lengths) / len(lengths),
            sum(rejected > chosen for chosen, rejected in lengths),
        )
        for flaw, lengths in by_flaw.items()
    }


def test_preferences_do_not_leak_the_education_qa_test_split():
    found = leaks(load_jsonl("preferences"), load_jsonl("education_qa/test"))
    assert found == [], "(preference text, education_qa test text) pairs that duplicate each other"


def test_leak_check_finds_exact_and_near_copies_of_a_test_question():
    test = load_jsonl("education_qa/test")[:5]
    question = test[0]["instruction"]
    pairs = [
        {"prompt": question.upper(), "chosen": "An unrelated answer about rivers.", "rejected": "x", "flaw": "wrong"},
        {"prompt": "Unrelated?", "chosen": test[1]["output"].replace(".", "!", 1), "rejected": "x", "flaw": "wrong"},
    ]
    assert [leaked for leaked, _ in leaks(pairs, test)] == [question.upper(), pairs[1]["chosen"]]


def test_rejected_is_often_the_longer_answer_for_every_flaw():
    stats = length_stats(load_jsonl("preferences"))
    shares = {flaw: longer / count for flaw, (count, _, _, longer) in stats.items()}
    assert min(shares.values()) >= MIN_SHARE_REJECTED_LONGER, shares


def test_preferences_card_reports_the_length_statistics_of_the_file():
    card = card_path("preferences").read_text(encoding="utf-8")
    reported = {
        flaw: (int(count), float(chosen), float(rejected), int(longer))
        for flaw, count, chosen, rejected, longer in LENGTH_ROW.findall(card)
    }
    actual = {
        flaw: (count, round(chosen, 1), round(rejected, 1), longer)
        for flaw, (count, chosen, rejected, longer) in length_stats(load_jsonl("preferences")).items()
    }
    assert reported == actual


def test_preferences_write_arithmetic_as_education_qa_does():
    """x for times, / for division, - for minus: one notation for a tokenizer to learn."""
    for number, pair in enumerate(load_jsonl("preferences"), start=1):
        text = " ".join((pair["prompt"], pair["chosen"], pair["rejected"]))
        assert not set(text) & set("×÷−"), f"line {number}"


@pytest.mark.parametrize("name", list(CORPORA))
def test_every_data_card_states_its_version_and_what_changed(name):
    card = card_path(name).read_text(encoding="utf-8")
    versions = VERSION_LINE.findall(card)
    assert len(versions) == 1, "one line 'Version: N (YYYY-MM-DD)'"
    version, _date = versions[0]
    if int(version) > 1:
        assert f"## Changes in version {version}" in card
