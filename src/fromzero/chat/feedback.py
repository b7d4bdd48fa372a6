"""Feedback on a model's answers, kept as training data: ratings, edits and choices.

A person who talks to a model knows better than any benchmark which answers were good. The chat
REPL (``good``, ``bad``, ``edit``, ``better 1|2``) and the server's page (👍/👎, edit, regenerate
and "this one is better") store what they say here, as one JSON record per line of
``feedback.jsonl`` in the feedback folder (``$FROMZERO_HOME/feedback`` unless ``--feedback-dir``
says otherwise). Three kinds of record, each with the conversation the answer replied to (ending
with the question), the text the model read (its template applied), the template, the model, the
adapter and the sampling settings:

* ``rating``: an answer, ``up`` or ``down``;
* ``edit``: an answer and the person's better version of it;
* ``choice``: two answers to the same conversation, and which one won (1 or 2).

**Never lost.** A record is acknowledged only once it is on disk: the whole line goes to the file
in one ``os.write`` on a descriptor opened with ``O_APPEND``, then ``fsync``. Writers hold an
exclusive ``flock`` on the file meanwhile and readers a shared one, so threads, or a REPL and a
server sharing the folder, never interleave their lines and a reader never sees half of one. A
crash in the middle of a write can still leave a torn last line; readers skip it with a warning,
and the next append starts on a fresh line, so the records before and after it stay readable.

**Exports** (:func:`export`) turn the records into the files ``fromzero finetune`` reads:

* ``sft``: instruction examples from the answers rated up and from the people's edits. An answer a
  one-question template (``qa``, ``alpaca``, plain continuation) gave becomes an
  ``instruction``/``output`` record: that template only ever saw the last question. An answer of
  the ``chat`` template becomes a ``messages`` record, the whole conversation with it at the end;
* ``dpo``: preference pairs ``prompt``/``chosen``/``rejected``: an edit is preferred to the answer
  it replaced, a choice's winner to its loser, and an answer rated up (or an edit) to an answer
  rated down for the same conversation. DPO pairs hold a single question, so ``prompt`` is the
  last user message; earlier turns are not part of a pair.

When one answer is rated more than once, the last rating counts (a person may change their mind).
Duplicates are written once, and records the loaders would refuse (an empty answer, a pair whose
two answers are the same) are left out and counted.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
import uuid
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Iterable

from rich.markup import escape

from fromzero.console import console
from fromzero.errors import InputError
from fromzero.files import write_text
from fromzero.paths import fromzero_home

FEEDBACK_FILE = "feedback.jsonl"
KINDS = ("rating", "edit", "choice")
RATINGS = ("up", "down")
FORMATS = ("sft", "dpo")
ROLES = ("system", "user", "assistant")
CHAT_TEMPLATE = "chat"  # the one template that reads a whole conversation


def default_folder() -> Path:
    """Where feedback goes when no folder is named: ``$FROMZERO_HOME/feedback``."""
    return fromzero_home() / "feedback"


@dataclass
class Feedback:
    """One thing a person said about an answer (the kinds are in the module docstring)."""

    kind: str
    messages: list[dict[str, str]]  # {role, content}, oldest first, ending with the user's question
    answer: str  # the model's answer; for a choice, answer 1
    rating: str | None = None  # rating: "up" or "down"
    better: str | None = None  # edit: the person's better version of the answer
    other: str | None = None  # choice: answer 2, to the same conversation
    chosen: int | None = None  # choice: 1 (answer) or 2 (other) won
    prompt: str | None = None  # the text the model read, its template applied (None: not known)
    template: str = "none"
    model: str = ""  # the model as given to chat or serve: a folder or a hub name
    adapter: str | None = None  # the adapter that answered; None: the base model (adapters off)
    other_adapter: str | None = None  # choice: the adapter that wrote answer 2
    settings: dict[str, Any] = field(default_factory=dict)  # temperature, top_k, ... of the answer
    origin: str = ""  # "chat" (the REPL) or "serve" (the API and its page)
    time: str = ""  # when it was stored, UTC, ISO 8601
    id: str = ""

    def check(self) -> Feedback:
        """Raise :class:`InputError` naming what is wrong with this record; return it when it is fine."""
        if self.kind not in KINDS:
            raise InputError(f"unknown feedback kind {self.kind!r}; kinds: {', '.join(KINDS)}")
        _check_messages(self.messages)
        if not isinstance(self.answer, str):
            raise InputError("the answer must be text")
        if self.kind == "rating" and self.rating not in RATINGS:
            raise InputError(f"a rating is 'up' or 'down', got {self.rating!r}")
        if self.kind == "edit":
            if not isinstance(self.better, str) or not self.better.strip():
                raise InputError("an edit needs the better answer (it is empty)")
            if self.better.strip() == self.answer.strip():
                raise InputError("the edited answer is the same as the original: change it, or rate it instead")
        if self.kind == "choice":
            if not isinstance(self.other, str):
                raise InputError("a choice needs the second answer ('other')")
            if self.chosen not in (1, 2):
                raise InputError(f"a choice names the better answer as 1 or 2, got {self.chosen!r}")
        if not isinstance(self.settings, dict):
            raise InputError("the settings must be a JSON object")
        return self

    @property
    def question(self) -> str:
        """The last user message: what was asked."""
        return self.messages[-1]["content"]

    @property
    def winner(self) -> str:
        return self.answer if self.chosen == 1 else (self.other or "")

    @property
    def loser(self) -> str:
        return (self.other or "") if self.chosen == 1 else self.answer

    @classmethod
    def from_dict(cls, record: dict) -> Feedback:
        """A record as read back from the file; fields this version does not know are ignored."""
        names = {f.name for f in fields(cls)}
        missing = [name for name in ("kind", "messages", "answer") if name not in record]
        if missing:
            raise InputError(f"the record has no {', '.join(missing)}")
        return cls(**{key: value for key, value in record.items() if key in names}).check()


def _check_messages(messages: Any) -> None:
    if not isinstance(messages, list) or not messages:
        raise InputError("the messages must be a non-empty list of {role, content}: the conversation answered")
    for i, message in enumerate(messages, start=1):
        if not isinstance(message, dict) or not isinstance(message.get("content"), str):
            raise InputError(f"message {i} needs a role and a text content")
        if message.get("role") not in ROLES:
            raise InputError(f"message {i} has the role {message.get('role')!r}; roles: {', '.join(ROLES)}")
        if message["role"] == "system" and i > 1:
            raise InputError(f"message {i} is a system message; only the first message may be one")
    if messages[-1]["role"] != "user":
        raise InputError("the messages must end with the user's question that the answer replies to")


class FeedbackStore:
    """The feedback of one folder: durable appends to its ``feedback.jsonl``, and reading it back."""

    def __init__(self, folder: str | os.PathLike | None = None) -> None:
        self.folder = Path(folder).expanduser() if folder is not None else default_folder()
        self.path = self.folder / FEEDBACK_FILE

    def add(self, feedback: Feedback) -> Feedback:
        """Check ``feedback``, give it an id and a time, and store it; it is on disk when this returns."""
        feedback.check()
        feedback.id = feedback.id or f"fb-{uuid.uuid4().hex[:20]}"
        feedback.time = feedback.time or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        self._append((json.dumps(asdict(feedback), ensure_ascii=False) + "\n").encode("utf-8"))
        return feedback

    def _append(self, line: bytes) -> None:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            created = not self.path.exists()
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)  # released when fd is closed
                size = os.fstat(fd).st_size
                if size and os.pread(fd, 1, size - 1) != b"\n":
                    line = b"\n" + line  # the last line was torn by a crash: start a fresh one
                if os.write(fd, line) != len(line):
                    raise OSError("only part of the record could be written (is the disk full?)")
                os.fsync(fd)
            finally:
                os.close(fd)
            if created:  # the new file's name must reach the disk too, not only its content
                folder = os.open(self.folder, os.O_RDONLY)
                try:
                    os.fsync(folder)
                finally:
                    os.close(folder)
        except OSError as err:
            raise InputError(f"cannot store the feedback in {self.path}: {err.strerror or err}") from None

    def records(self) -> list[Feedback]:
        """Every record, oldest first; torn or unreadable lines are skipped with one warning."""
        try:
            with open(self.path, "rb") as file:
                fcntl.flock(file, fcntl.LOCK_SH)  # no writer is half-way through a line meanwhile
                data = file.read()
        except FileNotFoundError:
            return []
        except OSError as err:
            raise InputError(f"cannot read {self.path}: {err.strerror or err}") from None
        records, bad = [], []
        for number, raw in enumerate(data.split(b"\n"), start=1):
            if not raw.strip():
                continue
            try:
                record = json.loads(raw.decode("utf-8"))
                if not isinstance(record, dict):
                    raise InputError("not a JSON object")
                records.append(Feedback.from_dict(record))
            except (UnicodeDecodeError, json.JSONDecodeError, InputError, TypeError):
                bad.append(number)
        if bad:
            torn = " (a write cut short by a crash)" if bad == [data.count(b"\n") + 1] else ""
            shown = ", ".join(map(str, bad[:10])) + (", ..." if len(bad) > 10 else "")
            console.print(f"[yellow]warning:[/] skipped {len(bad)} unreadable line(s) of {escape(str(self.path))}"
                          f"{torn}: {shown}", soft_wrap=True)
        return records


# ---- exports ------------------------------------------------------------------------------------

@dataclass
class Export:
    """The records of an export file, and how many were left out because a loader would refuse them."""

    records: list[dict]
    left_out: int = 0


def _key(messages: list[dict[str, str]]) -> str:
    """The conversation as one string: two answers to the same key answer the same thing."""
    return json.dumps([[m["role"], m["content"].strip()] for m in messages], ensure_ascii=False)


def _latest_ratings(records: Iterable[Feedback]) -> list[Feedback]:
    """One rating per answer (conversation and text): the last one given, in the order first rated."""
    latest: dict[tuple[str, str], Feedback] = {}
    for record in records:
        if record.kind == "rating":
            key = (_key(record.messages), record.answer.strip())
            latest.pop(key, None)  # a changed mind moves the answer to where it was last rated
            latest[key] = record
    return list(latest.values())


def _good_answers(records: list[Feedback]) -> list[tuple[Feedback, str]]:
    """``(record, answer)`` for each answer a person approved: rated up, or written as an edit."""
    good = [(r, r.answer) for r in _latest_ratings(records) if r.rating == "up"]
    return good + [(r, r.better or "") for r in records if r.kind == "edit"]


def sft_records(records: list[Feedback]) -> Export:
    """Instruction examples (the module docstring says which shape when) from the approved answers."""
    out: dict[str, dict] = {}
    left_out = 0
    for record, answer in _good_answers(records):
        texts = [answer, *(m["content"] for m in record.messages)]
        if not all(text.strip() for text in texts):
            left_out += 1  # an empty answer or turn: load_instructions refuses it
            continue
        if record.template == CHAT_TEMPLATE:
            example = {"messages": [{"role": m["role"], "content": m["content"].strip()} for m in record.messages]
                       + [{"role": "assistant", "content": answer.strip()}]}
        else:
            example = {"instruction": record.question.strip(), "output": answer.strip()}
        out.setdefault(json.dumps(example, sort_keys=True, ensure_ascii=False), example)
    return Export(list(out.values()), left_out)


def dpo_records(records: list[Feedback]) -> Export:
    """Preference pairs ``{prompt, chosen, rejected}`` from edits, choices and opposite ratings."""
    pairs: list[tuple[str, str, str]] = []
    for record in records:
        if record.kind == "edit":
            pairs.append((record.question, record.better or "", record.answer))
        elif record.kind == "choice":
            pairs.append((record.question, record.winner, record.loser))
    by_conversation: dict[str, list[Feedback]] = {}
    for record in _latest_ratings(records):
        if record.rating == "down":
            by_conversation.setdefault(_key(record.messages), []).append(record)
    for good, answer in _good_answers(records):
        for bad in by_conversation.get(_key(good.messages), []):
            pairs.append((good.question, answer, bad.answer))
    out: dict[tuple[str, str, str], dict] = {}
    left_out = 0
    for prompt, chosen, rejected in pairs:
        prompt, chosen, rejected = prompt.strip(), chosen.strip(), rejected.strip()
        if not (prompt and chosen and rejected) or chosen == rejected:
            left_out += 1  # load_preferences refuses an empty text, and a pair that prefers nothing
            continue
        out.setdefault((prompt, chosen, rejected), {"prompt": prompt, "chosen": chosen, "rejected": rejected})
    return Export(list(out.values()), left_out)


def export(store: FeedbackStore, format: str, out: str | os.PathLike) -> Export:
    """Write the ``sft`` or ``dpo`` file of ``store``'s records to ``out``, atomically.

    ``out`` is JSONL (one record a line), or a JSON list when it ends in ``.json``: both are what
    ``fromzero finetune sft|dpo --data`` reads. Nothing is written when there is nothing to export.
    """
    if format not in FORMATS:
        raise InputError(f"unknown export format {format!r}; formats: {', '.join(FORMATS)}")
    records = store.records()
    if not records:
        raise InputError(f"there is no feedback in {store.path} yet: rate some answers first")
    result = sft_records(records) if format == "sft" else dpo_records(records)
    if not result.records:
        needed = ("answers rated up, or edited answers" if format == "sft"
                  else "edits, choices between two answers, or an answer rated down next to a better one")
        raise InputError(f"{store.path} holds nothing to export as {format} ({len(records)} record(s)); "
                         f"it needs {needed}")
    out = Path(out)
    if out.suffix.lower() == ".json":
        text = json.dumps(result.records, ensure_ascii=False, indent=2) + "\n"
    else:
        text = "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in result.records)
    write_text(out, text)
    return result
