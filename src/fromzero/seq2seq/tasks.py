"""What a sequence-to-sequence model learns: pairs of (source, target) texts.

Four built-in tasks, and your own files:

- ``translate-en-hi``: the bundled English–Hindi corpus (``translation_en_hi``), its own test split held out;
- ``copy``, ``reverse``: random letter strings, the target the string itself or reversed. Copying is
  the smallest test of cross-attention (each output position must find one source position);
  reversing makes the alignment run backwards, which a plain GRU finds much harder than attention;
- ``numbers``: a number written in digits to the same number in English words ("4012" -> "four
  thousand twelve"): a real mapping with rules, one source token becoming several target words;
- a file: ``.jsonl`` records with ``source``/``target`` (or ``en``/``hi``) fields, ``.tsv`` lines
  ``source<TAB>target``, or two line-aligned plain-text files (``--task SRC --targets TGT``).

The synthetic tasks are drawn from a seeded generator: the same seed gives the same pairs, and no
held-out test pair appears in the training pairs, so test accuracy measures generalisation.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

from fromzero.data import corpus_path
from fromzero.errors import InputError, MissingFileError
from fromzero.seq2seq.config import SYNTHETIC

Pair = tuple[str, str]
TASKS = ("translate-en-hi", *SYNTHETIC)
LETTERS = "abcdefghijklmnopqrstuvwxyz"


@dataclass
class TaskData:
    name: str
    train: list[Pair]
    test: list[Pair]  # held out: never trained on, scored at the end


def load_task(task: str, *, targets: str | None = None, train_size: int = 20_000, test_size: int = 500,
              max_len: int = 16, seed: int = 0) -> TaskData:
    """The pairs of ``task`` (a built-in name, or a file; see the module docstring).

    ``train_size``, ``test_size`` and ``max_len`` (the longest string) shape the synthetic tasks. A file
    has no test split of its own: its ``test`` is empty, and the caller holds out part of its pairs.
    """
    if task in SYNTHETIC:
        if targets is not None:
            raise InputError(f"--targets is for a source file; the {task} task makes its own targets")
        return synthetic(task, train_size, test_size, max_len, seed)
    if task == "translate-en-hi":
        root = corpus_path("translation_en_hi")
        return TaskData(task, *(read_pairs(root / f"{part}.jsonl") for part in ("train", "test")))
    path = Path(task).expanduser()
    if not path.exists():
        raise InputError(f"unknown task {task!r}: give one of {', '.join(TASKS)}, or a .jsonl/.tsv file of pairs")
    pairs = read_parallel(path, Path(targets).expanduser()) if targets else read_pairs(path)
    return TaskData(path.name, pairs, [])


# ---------------------------------------------------------------- files
def read_pairs(path: Path) -> list[Pair]:
    """Pairs from a ``.jsonl`` (``source``/``target`` or ``en``/``hi`` fields) or ``.tsv`` file."""
    if path.is_dir():
        raise InputError(f"{path} is a folder; give a .jsonl or .tsv file of pairs")
    lines = read_lines(path)
    pairs = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path}, line {number}"
        if path.suffix == ".jsonl":
            pairs.append(_json_pair(line, where))
        elif path.suffix == ".tsv":
            parts = line.split("\t")
            if len(parts) != 2:
                raise InputError(f"{where}: expected source<TAB>target, found {len(parts) - 1} tabs")
            pairs.append(_check_pair(parts[0], parts[1], where))
        else:
            raise InputError(f"{path}: pairs files end in .jsonl or .tsv; for two plain-text files give "
                             f"--task SOURCES --targets TARGETS")
    if not pairs:
        raise InputError(f"{path} holds no pairs")
    return pairs


def read_parallel(sources: Path, targets: Path) -> list[Pair]:
    """Line ``i`` of ``sources`` with line ``i`` of ``targets``: the counts must agree."""
    left, right = read_lines(sources), read_lines(targets)
    if len(left) != len(right):
        shorter, longer = (sources, targets) if len(left) < len(right) else (targets, sources)
        raise InputError(f"{sources} has {len(left)} lines and {targets} has {len(right)}: line "
                         f"{min(len(left), len(right)) + 1} of {longer} has no partner in {shorter}")
    pairs = [_check_pair(s, t, f"{sources}/{targets.name}, line {i}")
             for i, (s, t) in enumerate(zip(left, right), start=1)]
    if not pairs:
        raise InputError(f"{sources} and {targets} are empty")
    return pairs


def read_lines(path: Path) -> list[str]:
    if not path.is_file():
        raise MissingFileError(f"no such file: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise InputError(f"{path} is not UTF-8 text (byte {err.start}): save it as UTF-8") from None
    return text.splitlines()


def _json_pair(line: str, where: str) -> Pair:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as err:
        raise InputError(f"{where}: not valid JSON ({err.msg})") from None
    if not isinstance(record, dict):
        raise InputError(f"{where}: expected a JSON object with source/target fields")
    for source, target in (("source", "target"), ("en", "hi")):
        if source in record and target in record:
            return _check_pair(record[source], record[target], where)
    raise InputError(f"{where}: needs source and target fields (or en and hi), found {sorted(record)}")


def _check_pair(source: object, target: object, where: str) -> Pair:
    if not isinstance(source, str) or not isinstance(target, str) or not source.strip() or not target.strip():
        raise InputError(f"{where}: an empty source or target; every pair needs text on both sides")
    return source.strip(), target.strip()


# ---------------------------------------------------------------- synthetic tasks
def synthetic(task: str, train_size: int, test_size: int, max_len: int, seed: int) -> TaskData:
    """``train_size`` training pairs and ``test_size`` distinct held-out pairs of a synthetic task.

    Held-out pairs are drawn only where there are many to choose from (strings of 4 letters or more,
    numbers of 4 digits or more): holding out "b" or "7" would leave training without them.
    """
    if min(train_size, test_size) < 1 or max_len < TEST_MIN_LEN:
        raise InputError(f"train_size and test_size must be at least 1 and max_len at least {TEST_MIN_LEN}")
    rng = random.Random(seed)
    if task == "numbers":
        def make(shortest: int) -> Pair:
            return _number_pair(rng, shortest)
    else:
        def make(shortest: int) -> Pair:
            return _letters_pair(rng, task, shortest, max_len)
    test: dict[str, str] = {}
    while len(test) < test_size:
        source, target = make(TEST_MIN_LEN)
        test[source] = target
    train = []
    while len(train) < train_size:
        source, target = make(1)
        if source not in test:
            train.append((source, target))
    return TaskData(task, train, list(test.items()))


TEST_MIN_LEN = 4  # letters, or digits, of a held-out synthetic source


def _letters_pair(rng: random.Random, task: str, shortest: int, max_len: int) -> Pair:
    text = "".join(rng.choice(LETTERS) for _ in range(rng.randint(shortest, max_len)))
    return text, text if task == "copy" else text[::-1]


def _number_pair(rng: random.Random, shortest: int) -> Pair:
    # as many 1-digit as 6-digit numbers: uniform over 0..999,999 would be 90% six digits
    digits = rng.randint(shortest, 6)
    n = rng.randrange(10 ** (digits - 1) if digits > 1 else 0, 10 ** digits)
    return str(n), number_words(n)


ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
        "sixteen seventeen eighteen nineteen").split()
TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()


def number_words(n: int) -> str:
    """``n`` (0 to 999,999,999) in English words: 4012 -> "four thousand twelve", 21 -> "twenty-one"."""
    if not 0 <= n < 10 ** 9:
        raise InputError(f"number_words handles 0 to 999,999,999, got {n}")
    if n == 0:
        return "zero"
    words = []
    for scale, name in ((10 ** 6, "million"), (10 ** 3, "thousand"), (1, "")):
        chunk, n = divmod(n, scale)
        if chunk:
            words += [_below_thousand(chunk)] + ([name] if name else [])
    return " ".join(words)


def _below_thousand(n: int) -> str:
    hundreds, rest = divmod(n, 100)
    words = [ONES[hundreds], "hundred"] if hundreds else []
    if rest >= 20:
        tens, ones = divmod(rest, 10)
        words.append(TENS[tens] + (f"-{ONES[ones]}" if ones else ""))
    elif rest:
        words.append(ONES[rest])
    return " ".join(words)
