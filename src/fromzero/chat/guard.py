"""An optional guard for a classroom chatbot: refuse some requests, flag unsure answers, log refusals.

``fromzero chat --guard`` (and ``fromzero serve --guard``) put it in front of the model:

* **an input filter.** A question that contains a word or phrase from one of the lists below is
  not sent to the model; the user gets a polite refusal instead (a caring one for self-harm).
* **a confidence note.** After an answer, the mean probability the model gave to its own tokens
  is measured; below a threshold the answer gets a note ("not very sure — please check with your
  teacher"). A small model is often wrong and always fluent: the number tells the two apart a little.
* **sources**, when retrieval supplied them, are appended to the answer so a reader can check it.
* **a log.** Every refusal is appended to a JSONL file (one JSON object a line: time, category,
  matched words, question), so a teacher can see what was asked.

This is deliberately simple and it is **not a safety guarantee**. The lists match whole words
and phrases after lower-casing and dropping punctuation, nothing more: a misspelling, a synonym or
another language passes, and an innocent question with a listed word is refused. Real deployments
need a trained moderation model and human review; this guard shows where such a filter sits and
how it behaves, and it is easy to read and to extend (pass your own ``categories``).
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import torch

from fromzero.errors import InputError
from fromzero.finetune.batches import IGNORE_INDEX
from fromzero.finetune.losses import token_logprobs


@dataclass(frozen=True)
class Category:
    """Words and phrases (lower case, words separated by one space) and the reply to a request with one."""

    words: tuple[str, ...]
    reply: str


DECLINE = ("I'm sorry, I can't help with that. I'm here for school subjects: try asking me about science, maths, "
           "history or language.")

CATEGORIES: dict[str, Category] = {
    "self-harm": Category(
        ("suicide", "suicidal", "kill myself", "hurt myself", "harm myself", "self harm", "end my life",
         "want to die"),
        "I'm sorry you are feeling this way. I can't help with this, but people can: please talk to a "
        "parent, a teacher or another adult you trust today, or call a helpline.",
    ),
    "violence": Category(
        ("make a bomb", "build a bomb", "make explosives", "make a gun", "build a gun", "make a weapon",
         "kill someone", "kill my", "murder", "poison someone", "shoot someone", "stab someone"),
        DECLINE,
    ),
    "adult": Category(("sexy", "porn", "pornography", "nude", "nudes", "naked", "xxx"), DECLINE),
    "drugs": Category(
        ("cocaine", "heroin", "meth", "methamphetamine", "get high", "buy drugs", "weed", "marijuana", "lsd"),
        DECLINE,
    ),
    "cheating": Category(
        ("hack into", "hack my", "steal", "stealing", "password of", "cheat on", "cheat in", "fake id"),
        DECLINE,
    ),
    "off-topic": Category(
        ("gambling", "betting", "casino", "lottery", "bitcoin", "crypto", "stock tips", "dating", "horoscope"),
        DECLINE,
    ),
}

LOW_CONFIDENCE = 0.3  # mean token probability below which an answer gets the note
CONFIDENCE_NOTE = "(not very sure — please check with your teacher)"


@dataclass(frozen=True)
class Refusal:
    """Why a request was refused and what to say instead."""

    category: str
    matched: tuple[str, ...]  # the listed words and phrases found in the request
    message: str


@dataclass
class Guard:
    """The filter, the confidence note and the refusal log; ``log_path=None`` keeps no log."""

    log_path: Path | None = None
    min_confidence: float = LOW_CONFIDENCE
    categories: Mapping[str, Category] = field(default_factory=lambda: dict(CATEGORIES))

    def __post_init__(self) -> None:
        if not 0 <= self.min_confidence <= 1:
            raise InputError(f"the guard's confidence threshold must be in [0, 1], got {self.min_confidence}")
        self.log_path = Path(self.log_path).expanduser() if self.log_path is not None else None

    def check(self, question: str) -> Refusal | None:
        """A :class:`Refusal` when ``question`` contains a listed word (logged), else None."""
        text = f" {_normalise(question)} "
        for name, category in self.categories.items():
            matched = tuple(word for word in category.words if f" {word} " in text)
            if matched:
                refusal = Refusal(name, matched, category.reply)
                self.log(question, refusal)
                return refusal
        return None

    def confidence_note(self, mean_token_prob: float | None) -> str | None:
        """The note for an answer whose tokens had this mean probability, or None when it is high enough."""
        if mean_token_prob is None or mean_token_prob >= self.min_confidence:
            return None
        return CONFIDENCE_NOTE

    def log(self, question: str, refusal: Refusal) -> None:
        """Append one JSON line. Appending (one ``write`` of a whole line, ``O_APPEND``) rather than
        rewriting keeps a long log cheap and never loses earlier lines; readers skip a torn last line."""
        if self.log_path is None:
            return
        record = {"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "category": refusal.category,
                  "matched": list(refusal.matched), "question": question}
        try:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
            try:
                os.write(fd, (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8"))
            finally:
                os.close(fd)
        except OSError as err:
            raise InputError(f"cannot append to the guard log {self.log_path}: {err.strerror or err}") from None


def with_sources(answer: str, sources: Sequence[str]) -> str:
    """``answer`` followed by the sources retrieval supplied (unchanged when there are none)."""
    if not sources:
        return answer
    return answer.rstrip() + "\n\nSources:\n" + "".join(f"- {source}\n" for source in sources)


@torch.inference_mode()
def mean_token_probability(model: torch.nn.Module, prompt_ids: Sequence[int],
                           answer_ids: Sequence[int]) -> float | None:
    """The mean probability ``model`` gives each token of ``answer_ids`` after ``prompt_ids`` (None: no answer).

    One teacher-forced forward pass over prompt + answer (its last ``block_size`` tokens), the raw
    distribution (no temperature or top-k): how likely the model itself finds what it said.
    """
    if not answer_ids:
        return None
    ids = [*prompt_ids, *answer_ids][-model.config.block_size:]
    scored = min(len(answer_ids), len(ids) - 1)
    if scored < 1:
        return None
    labels = torch.full((1, len(ids)), IGNORE_INDEX)
    labels[0, -scored:] = torch.tensor(ids[-scored:])
    device = next(model.parameters(), torch.empty(0)).device
    logits = model(torch.tensor([ids], device=device)).logits.float().cpu()
    logprobs = token_logprobs(logits, labels)[0, -scored:]
    return float(logprobs.exp().mean())


def _normalise(text: str) -> str:
    return " ".join(re.sub(r"[^\w]+", " ", text.lower()).split())
