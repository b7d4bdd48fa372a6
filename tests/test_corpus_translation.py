"""The bundled English–Hindi corpus ``translation_en_hi``: schema, script, sizes, topics, no duplicates,
a held-out test split, and a data card whose numbers match the files.

Each check is a function that lists the problems it finds, so a failing test names the bad records,
and ``test_the_checks_catch_bad_records`` shows that every check does fail on bad data.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections import Counter

import pytest

from fromzero.cli import main
from fromzero.data import CORPORA, load_jsonl
from fromzero.data.bundled import card_path

NAME = "translation_en_hi"
FIELDS = ("en", "hi", "topic")
TOPICS = {
    "family", "school", "food", "weather", "travel", "health", "nature", "animals", "numbers_time",
    "daily_life", "science", "places", "feelings", "sports", "shopping",
}  # fmt: skip
MIN_COUNTS = {"train": 1500, "test": 150}
MIN_WORDS, MAX_WORDS = 4, 15
MIN_DEVANAGARI_SHARE = 0.8
TOPIC_ROW = re.compile(r"^\| (\w+) \| (\d+) \| (\d+) \|$", re.MULTILINE)
FILE_ROW = re.compile(r"^\| `translation_en_hi/(\w+)\.jsonl` \| (\d+) \|", re.MULTILINE)


def is_devanagari(char: str) -> bool:
    return "\u0900" <= char <= "\u097f"


def devanagari_share(text: str) -> float:
    """The share of the letters (vowel signs included) of ``text`` that are in the Devanagari block."""
    letters = [char for char in text if unicodedata.category(char)[0] in "LM"]
    return sum(map(is_devanagari, letters)) / len(letters) if letters else 0.0


def normalise(text: str) -> str:
    """Lower case without punctuation (the danda ``।`` included) and with single spaces."""
    text = unicodedata.normalize("NFKC", text).casefold()
    return " ".join("".join(" " if unicodedata.category(char)[0] == "P" else char for char in text).split())


def record_problems(records: list[dict]) -> list[str]:
    """One line per record that breaks the schema, the script or the length rules."""
    problems = []
    for number, record in enumerate(records, start=1):
        if tuple(record) != FIELDS:
            problems.append(f"{number}: fields {list(record)}, expected {list(FIELDS)}")
            continue
        if not all(isinstance(record[field], str) and record[field].strip() for field in FIELDS):
            problems.append(f"{number}: empty or non-string field")
            continue
        en, hi, topic = record["en"], record["hi"], record["topic"]
        if topic not in TOPICS:
            problems.append(f"{number}: unknown topic {topic!r}")
        if not MIN_WORDS <= len(en.split()) <= MAX_WORDS:
            problems.append(f"{number}: {len(en.split())} English words: {en!r}")
        if any(map(is_devanagari, en)):
            problems.append(f"{number}: Devanagari in the English: {en!r}")
        if devanagari_share(hi) < MIN_DEVANAGARI_SHARE:
            problems.append(f"{number}: Hindi not in Devanagari: {hi!r}")
        if not hi.endswith(("।", "?")):
            problems.append(f"{number}: Hindi does not end with the danda or '?': {hi!r}")
        if re.search(r"[0-9\u0966-\u096f]", en + hi):
            problems.append(f"{number}: a number written in digits, not words: {en!r}")
    return problems


def duplicates(texts: list[str]) -> list[str]:
    """Texts that repeat an earlier one after :func:`normalise`."""
    seen: set[str] = set()
    repeated = []
    for text in texts:
        key = normalise(text)
        if key in seen:
            repeated.append(text)
        seen.add(key)
    return repeated


def topic_counts(records: list[dict]) -> Counter:
    return Counter(record["topic"] for record in records)


@pytest.fixture(scope="module")
def splits() -> dict[str, list[dict]]:
    return {part: load_jsonl(f"{NAME}/{part}") for part in CORPORA[NAME].parts}


def test_the_corpus_is_registered_with_a_train_and_a_test_split():
    corpus = CORPORA[NAME]
    assert corpus.kind == "jsonl"
    assert set(corpus.parts) == {"train", "test"}


def test_counts(splits):
    for part, minimum in MIN_COUNTS.items():
        assert len(splits[part]) >= minimum, part


def test_every_record_has_the_schema_script_and_length(splits):
    for part, records in splits.items():
        assert record_problems(records) == [], part


def test_every_topic_is_in_the_test_split(splits):
    assert set(topic_counts(splits["test"])) == TOPICS
    assert set(topic_counts(splits["train"])) == TOPICS


def test_no_duplicates_within_or_across_the_splits(splits):
    train, test = splits["train"], splits["test"]
    for field in ("en", "hi"):
        assert duplicates([record[field] for record in train]) == [], f"{field} repeated in train"
        assert duplicates([record[field] for record in test]) == [], f"{field} repeated in test"
        test_keys = {normalise(record[field]) for record in test}
        shared = [record[field] for record in train if normalise(record[field]) in test_keys]
        assert shared == [], f"test {field} sentences also in train"


def test_the_data_card_reports_the_topic_counts_of_the_files(splits):
    card = card_path(NAME).read_text(encoding="utf-8")
    reported = {topic: (int(train), int(test)) for topic, train, test in TOPIC_ROW.findall(card)}
    train, test = topic_counts(splits["train"]), topic_counts(splits["test"])
    assert reported == {topic: (train[topic], test[topic]) for topic in TOPICS}
    files = {part: int(count) for part, count in FILE_ROW.findall(card)}
    assert files == {part: len(records) for part, records in splits.items()}


def test_data_list_shows_the_corpus_with_its_counts(splits, capsys):
    assert main(["data", "list", "--json"]) == 0
    listing = {info["name"]: info for info in json.loads(capsys.readouterr().out)}
    info = listing[NAME]
    assert info["kind"] == "jsonl"
    assert info["counts"] == {part: len(records) for part, records in splits.items()}
    assert info["version"] == "1 (2026-12-07)"
    assert "Hindi" in info["description"]


def test_the_checks_catch_bad_records():
    good = {"en": "My sister is older than me.", "hi": "मेरी बहन मुझसे बड़ी है।", "topic": "family"}
    bad = [
        {"en": "My sister is older than me.", "hi": "मेरी बहन मुझसे बड़ी है।"},  # a field missing
        {**good, "topic": "music"},
        {**good, "hi": "  "},
        {**good, "en": "Too short."},
        {**good, "en": "This English sentence is far too long to be a school-level sentence for this small bundled corpus."},
        {**good, "en": "My बहन is older than me."},
        {**good, "hi": "Meri behan mujhse badi hai."},
        {**good, "hi": "मेरी बहन मुझसे बड़ी है"},
        {**good, "en": "My sister is 2 years older than me."},
    ]
    assert record_problems([good]) == []
    flagged = {int(line.split(":")[0]) for line in record_problems(bad)}
    assert flagged == set(range(1, len(bad) + 1)), "every bad record is reported"
    assert duplicates(["My sister is older than me.", "my sister is older than me", "Your sister?"]) == [
        "my sister is older than me"
    ]
    assert duplicates(["मेरी बहन मुझसे बड़ी है।", "मेरी बहन मुझसे बड़ी है?"]) == ["मेरी बहन मुझसे बड़ी है?"]
