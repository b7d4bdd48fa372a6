"""Instruction data: question/answer records, conversations and preference pairs, read and checked.

Fine-tuning teaches a model to answer, so every example must hold a question and its answer. Three
record shapes are understood, one record per line of a JSONL file, or a JSON file holding a list
of records (``alpaca_data.json`` is one):

* **Alpaca**: ``instruction``, an optional ``input`` (extra context: an equation, a passage), ``output``;
* **the course's**: the question in ``instruction`` or ``question``, the answer in ``response``,
  ``answer`` or ``output``; the first of these fields a record has is used, in that order;
* **chat**: ``messages``, a list of ``{"role": "system" | "user" | "assistant", "content": ...}``:
  an optional system message first, then the turns, ending with the assistant's answer.

Preference pairs for DPO (:func:`load_preferences`) hold ``prompt``, ``chosen`` and ``rejected``,
as the bundled ``preferences`` corpus does; a pair whose two answers are the same teaches nothing
and is refused.

The bundled ``education_qa`` works by name and means its *train* part: its test part is held out
for evaluation (see its data card) and is read only when named, ``education_qa/test``. Texts are
stripped of surrounding whitespace, so a stray final newline is not trained as part of an answer.

Errors follow :mod:`fromzero.data.loading`'s rule for JSONL: a broken line or a record that lacks
a field (named, with the fields the record has) or holds an unknown role stops with its line
number, unless ``--skip-bad`` skips such records with a warning; data with no usable record at
all is always an error.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, TypeVar

from fromzero.data.bundled import get_corpus, is_corpus_name
from fromzero.data.loading import BadLine, check_bad_lines, existing_path, read_jsonl, read_text_file
from fromzero.errors import CorruptFileError, InputError

ROLES = ("system", "user", "assistant")
PROMPT_FIELDS = ("instruction", "question")
RESPONSE_FIELDS = ("response", "answer", "output")
PREFERENCE_FIELDS = ("prompt", "chosen", "rejected")
JSON_SUFFIX = ".json"

Source = str | os.PathLike
T = TypeVar("T")


@dataclass(frozen=True)
class Message:
    """One turn of a conversation."""

    role: str  # one of ROLES
    content: str


@dataclass(frozen=True)
class Example:
    """One instruction example, always held as a conversation.

    A question/answer record is one user turn (the question) and one assistant turn (the answer);
    its Alpaca ``input`` stays apart so that a template with an Input section can show it there.
    ``source`` says where it came from (``"train.jsonl line 5"``) for error messages.
    """

    messages: tuple[Message, ...]
    input: str = ""
    source: str = field(default="", compare=False)

    @property
    def system(self) -> str | None:
        return self.messages[0].content if self.messages and self.messages[0].role == "system" else None

    @property
    def turns(self) -> tuple[Message, ...]:
        """The messages after the system message."""
        return self.messages[1:] if self.system is not None else self.messages


@dataclass(frozen=True)
class PreferencePair:
    """A prompt with a better (``chosen``) and a worse (``rejected``) answer."""

    prompt: str
    chosen: str
    rejected: str
    source: str = field(default="", compare=False)


class _BadRecord(Exception):
    """A record that cannot be used; the message says why (it becomes a bad line)."""


def instruction_source(source: Source) -> Source:
    """The data behind a name: ``education_qa`` is its train part; other sources are themselves."""
    if not is_corpus_name(source):
        return source
    name, _, part = str(source).partition("/")
    corpus = get_corpus(name)
    if corpus.kind != "jsonl":
        raise InputError(f"{name} is a text corpus, not instruction data; bundled instruction data: education_qa")
    if not part and "train" in corpus.parts:
        return f"{name}/train"
    return source


def _read_records(source: Source) -> tuple[Path, list[tuple[int, dict]], list[BadLine], str]:
    """``(path, [(number, record)], bad lines, unit)`` of a JSONL file or a JSON list of records."""
    source = instruction_source(source)
    if is_corpus_name(source) or Path(source).suffix.lower() != JSON_SUFFIX:
        content = read_jsonl(source)
        return content.path, list(zip(content.record_lines, content.records)), content.bad_lines, "line"
    path = existing_path(source)
    try:
        value = json.loads(read_text_file(path))
    except json.JSONDecodeError as err:
        where = f"line {err.lineno} column {err.colno}"
        raise CorruptFileError(f"{path} is not valid JSON ({err.msg} at {where})") from None
    if not isinstance(value, list):
        raise CorruptFileError(f"{path} should hold a JSON list of records, not a {type(value).__name__}")
    records, bad = [], []
    for number, record in enumerate(value, start=1):
        if isinstance(record, dict):
            records.append((number, record))
        else:
            bad.append(BadLine(number, f"expected a JSON object, got {type(record).__name__}"))
    if not records and not bad:
        raise InputError(f"{path} holds an empty list: there are no records")
    return path, records, bad, "record"


def _fields(record: dict) -> str:
    return ", ".join(record) or "none"


def _text(record: dict, name: str) -> str:
    """The stripped text of ``record[name]``; a missing, non-text or empty value is a bad record."""
    value = record[name]
    if not isinstance(value, str):
        raise _BadRecord(f"{name!r} holds {type(value).__name__}, not text")
    if not value.strip():
        raise _BadRecord(f"{name!r} is empty")
    return value.strip()


def _first_field(record: dict, names: tuple[str, ...], what: str) -> str:
    for name in names:
        if name in record:
            return _text(record, name)
    raise _BadRecord(f"the record has no {what} field ({' or '.join(names)}; its fields: {_fields(record)})")


def _parse_messages(record: dict) -> tuple[Message, ...]:
    messages = record["messages"]
    if not isinstance(messages, list) or not messages:
        raise _BadRecord("'messages' must be a non-empty list of {role, content} objects")
    parsed = []
    for i, message in enumerate(messages, start=1):
        if not isinstance(message, dict) or "role" not in message or "content" not in message:
            fields = _fields(message) if isinstance(message, dict) else type(message).__name__
            raise _BadRecord(f"message {i} needs 'role' and 'content' (it has: {fields})")
        role = message["role"]
        if role not in ROLES:
            raise _BadRecord(f"message {i} has the unknown role {role!r} (roles: {', '.join(ROLES)})")
        if role == "system" and i > 1:
            raise _BadRecord(f"message {i} is a system message; only the first message may be one")
        try:
            parsed.append(Message(role, _text(message, "content")))
        except _BadRecord as err:
            raise _BadRecord(f"message {i}: {err}") from None
    if parsed[-1].role != "assistant":
        raise _BadRecord("the conversation must end with an assistant message: the answer to learn")
    if not any(m.role == "user" for m in parsed):
        raise _BadRecord("the conversation has no user message")
    return tuple(parsed)


def parse_example(record: dict, source: str = "") -> Example:
    """One record (any of the shapes in the module docstring) as an :class:`Example`."""
    if "messages" in record:
        return Example(_parse_messages(record), source=source)
    question = _first_field(record, PROMPT_FIELDS, "question")
    answer = _first_field(record, RESPONSE_FIELDS, "answer")
    context = record.get("input") or ""
    if not isinstance(context, str):
        raise _BadRecord(f"'input' holds {type(context).__name__}, not text")
    return Example((Message("user", question), Message("assistant", answer)), context.strip(), source)


def parse_preference(record: dict, source: str = "") -> PreferencePair:
    """One ``prompt``/``chosen``/``rejected`` record as a :class:`PreferencePair`."""
    missing = [name for name in PREFERENCE_FIELDS if name not in record]
    if missing:
        raise _BadRecord(f"the record has no {', '.join(map(repr, missing))} field (its fields: {_fields(record)})")
    pair = PreferencePair(*(_text(record, name) for name in PREFERENCE_FIELDS), source=source)
    if pair.chosen == pair.rejected:
        raise _BadRecord("'chosen' and 'rejected' are the same answer: the pair prefers nothing")
    return pair


_SHAPES = {
    "instruction examples": "instruction/question + response/answer/output fields, or messages",
    "preference pairs": "prompt, chosen and rejected fields",
}


def _load(
    source: Source, skip_bad: bool, parse: Callable[[dict, str], T], needed: tuple[str, ...], what: str
) -> list[T]:
    """Read ``source``, parse each record, and report the bad ones by the rule of the module docstring."""
    path, records, bad, unit = _read_records(source)
    if records and not any(name in record for _, record in records for name in needed):
        fields = ", ".join(dict.fromkeys(name for _, record in records for name in record)) or "none"
        raise InputError(f"{path}: no record has any of the fields {', '.join(needed)} (its fields: {fields}); "
                         f"{what} need {_SHAPES[what]}")
    items = []
    for number, record in records:
        try:
            items.append(parse(record, f"{path.name} {unit} {number}"))
        except _BadRecord as err:
            bad.append(BadLine(number, str(err)))
    check_bad_lines(path, bad, skip_bad, unit)
    if not items:
        raise InputError(f"{path} holds no usable {what}")
    return items


def load_instructions(source: Source, skip_bad: bool = False) -> list[Example]:
    """The examples of a JSONL or JSON file, or of a bundled corpus (``education_qa``: its train part)."""
    return _load(source, skip_bad, parse_example, (*PROMPT_FIELDS, "messages"), "instruction examples")


def instruction_records(source: Source) -> list[dict]:
    """The raw records of ``source`` in file order, for fields the examples do not keep (such as
    the ``keywords`` of the ``education_qa`` test split); :func:`load_instructions` checks them."""
    return [record for _, record in _read_records(source)[1]]


def load_preferences(source: Source = "preferences", skip_bad: bool = False) -> list[PreferencePair]:
    """The preference pairs of a JSONL or JSON file, by default the bundled ``preferences`` corpus."""
    return _load(source, skip_bad, parse_preference, ("prompt",), "preference pairs")
