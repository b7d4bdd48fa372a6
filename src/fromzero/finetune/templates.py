"""Prompt templates: how an example becomes the text a model is tuned on, and where its answer starts.

A template turns an :class:`~fromzero.finetune.instructions.Example` into *segments*: pieces of
text that are either prompt (shown to the model, no loss) or answer (what it learns to write),
some of them special tokens. A model must later be asked exactly the way it was taught, so the
inference prompt of an example (:meth:`Template.prompt`) is its training text up to the point
where the answer starts, and nothing else. After the answer, :mod:`fromzero.finetune.batches`
appends the end-of-text token, so that the model learns to stop by itself.

The templates, exactly (``{instruction}``, ``{input}``, ``{response}`` are the example's texts):

``qa``, the course's::

    ### Question:
    {instruction}

    ### Answer:
    {response}

``alpaca``, Stanford Alpaca's prompts as the project's README gives them (its ``train.py`` has no
newline after ``### Response:``). Without an input::

    Below is an instruction that describes a task. Write a response that appropriately completes the request.

    ### Instruction:
    {instruction}

    ### Response:
    {response}

and with one::

    Below is an instruction that describes a task, paired with an input that provides further context. Write a response that appropriately completes the request.

    ### Instruction:
    {instruction}

    ### Input:
    {input}

    ### Response:
    {response}

``chat``, for conversations: one block per message, blocks joined by a newline, the system
message :data:`DEFAULT_SYSTEM` unless the record has its own; every assistant message (its text
and its ``<|end|>``) is trained, so a model learns each answer of a multi-turn record::

    <|system|>
    {system}<|end|>
    <|user|>
    {user}<|end|>
    <|assistant|>
    {assistant}<|end|>

``<|system|>``, ``<|user|>``, ``<|assistant|>`` and ``<|end|>`` are special tokens: one id each,
which a tokenizer gains when it lacks them (:mod:`fromzero.finetune.vocab` explains how the model's
embedding grows with it). They are inserted by the template only: the same characters inside a
user's text are encoded as plain text, so no record can forge a turn.

A template file (``--template-file``) holds a template like ``qa``'s: the text before
``{response}`` is the prompt, ``{response}`` and any text after it are trained; ``{instruction}``
must appear, ``{input}`` may; one final newline, which editors add, is dropped. A template
without an ``{input}`` (``qa``, most files) shows a record's non-empty input after its
instruction, separated by a blank line, so nothing is lost.
"""

from __future__ import annotations

import os
import string
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

from fromzero.data.loading import read_text_file
from fromzero.errors import InputError
from fromzero.finetune.instructions import Example, Message

PLACEHOLDERS = ("instruction", "input", "response")
DEFAULT_SYSTEM = "You are a helpful assistant."
END = "<|end|>"

QA = "### Question:\n{instruction}\n\n### Answer:\n{response}"
ALPACA = (
    "Below is an instruction that describes a task. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Response:\n{response}"
)
ALPACA_WITH_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n{response}"
)


@dataclass(frozen=True)
class Segment:
    """A piece of a formatted example."""

    text: str
    answer: bool = False  # part of an answer: what the loss is on
    special: bool = False  # a special token of the template: one id, never encoded from text


class Template(ABC):
    """Formats examples; subclasses say how (``render``)."""

    name: str
    special_tokens: tuple[str, ...] = ()

    @abstractmethod
    def render(self, example: Example, generation: bool = False) -> list[Segment]:
        """The segments of ``example``; with ``generation``, the prompt of its last answer only."""

    def prompt(self, example: Example) -> str:
        """What a model is asked at inference: the training text up to where the last answer starts."""
        return "".join(segment.text for segment in self.render(example, generation=True))

    def text(self, example: Example) -> str:
        """The whole training text of ``example`` (without the end-of-text token)."""
        return "".join(segment.text for segment in self.render(example))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


@dataclass(frozen=True)
class _Form:
    """A checked template text: the prompt's pieces (literal, placeholder or None) and the text after ``{response}``."""

    prompt: tuple[tuple[str, str | None], ...]
    after: str
    has_input: bool


def _parse(text: str, where: str) -> _Form:
    """Check a template text (the rules are in the module docstring) and split it at ``{response}``."""
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError as err:
        raise InputError(f"{where} is not a valid template ({err}); write a literal brace as {{{{ or }}}}") from None
    names = [name for _, name, _, _ in parsed if name is not None]
    for _, name, spec, conversion in parsed:
        if name is not None and name not in PLACEHOLDERS:
            shown = ", ".join(f"{{{p}}}" for p in PLACEHOLDERS)
            raise InputError(f"{where} has the unknown placeholder {{{name}}}; placeholders: {shown} "
                             f"(write a literal brace as {{{{ or }}}})")
        if spec or conversion:
            raise InputError(f"{where}: placeholders take no format or conversion: write {{{name}}}")
    if names.count("response") != 1:
        problem = "has no {response} placeholder" if "response" not in names else "has {response} more than once"
        raise InputError(f"{where} {problem}: a template needs one {{response}}, where the answer goes")
    if "instruction" not in names:
        raise InputError(f"{where} has no {{instruction}} placeholder: the model would never see the question")
    cut = next(i for i, (_, name, _, _) in enumerate(parsed) if name == "response")
    if any(name is not None for _, name, _, _ in parsed[cut + 1:]):
        raise InputError(f"{where}: {{response}} must be the last placeholder (the prompt is the text before it)")
    prompt = tuple((literal, name) for literal, name, _, _ in parsed[:cut]) + ((parsed[cut][0], None),)
    after = "".join(literal for literal, _, _, _ in parsed[cut + 1:])
    return _Form(prompt, after, "input" in names)


class TextTemplate(Template):
    """A one-question template such as ``qa``, optionally with a second text for examples with an input."""

    def __init__(self, name: str, text: str, text_with_input: str | None = None, where: str | None = None) -> None:
        self.name = name
        where = where or f"template {name!r}"
        self.form = _parse(text, where)
        self.form_with_input = _parse(text_with_input, where) if text_with_input else None

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> "TextTemplate":
        return cls(Path(path).name, read_text_file(path).removesuffix("\n"), where=f"template file {path}")

    def render(self, example: Example, generation: bool = False) -> list[Segment]:
        instruction, response = self._question_and_answer(example)
        form = self.form_with_input if example.input and self.form_with_input else self.form
        if example.input and not form.has_input:
            instruction = f"{instruction}\n\n{example.input}"
        values = {"instruction": instruction, "input": example.input}
        prompt = Segment("".join(literal + (values[name] if name else "") for literal, name in form.prompt))
        return [prompt] if generation else [prompt, Segment(response + form.after, answer=True)]

    def _question_and_answer(self, example: Example) -> tuple[str, str]:
        turns = example.turns
        where = example.source or "an example"
        if example.system is not None:
            raise InputError(f"{where} has a system message, which only the chat template shows: use --template chat")
        if len(turns) > 2 or turns[0].role != "user" or (len(turns) == 2 and turns[1].role != "assistant"):
            raise InputError(f"{where} is a conversation of {len(turns)} messages; the {self.name} template "
                             "holds one question and its answer: use --template chat")
        return turns[0].content, turns[1].content if len(turns) == 2 else ""


class ChatTemplate(Template):
    """Conversations with a system prompt, marked by special tokens (the block layout is in the module docstring)."""

    name = "chat"
    special_tokens = ("<|system|>", "<|user|>", "<|assistant|>", END)

    def __init__(self, system: str = DEFAULT_SYSTEM) -> None:
        self.default_system = system

    def render(self, example: Example, generation: bool = False) -> list[Segment]:
        turns = list(example.turns)
        if example.input:  # a question/answer record's Alpaca input belongs to its question
            turns[0] = Message(turns[0].role, f"{turns[0].content}\n\n{example.input}")
        if generation and turns[-1].role == "assistant":
            turns.pop()
        messages = [Message("system", example.system or self.default_system), *turns]
        segments: list[Segment] = []
        for message in messages:
            answer = message.role == "assistant"
            segments += [Segment(f"<|{message.role}|>", special=True), Segment("\n"),
                         Segment(message.content, answer), Segment(END, answer, special=True), Segment("\n")]
        segments.pop()  # blocks are joined by newlines: none after the last one
        if generation:
            segments += [Segment("\n"), Segment("<|assistant|>", special=True), Segment("\n")]
        return segments


TEMPLATES: dict[str, Template] = {
    template.name: template
    for template in (TextTemplate("qa", QA), TextTemplate("alpaca", ALPACA, ALPACA_WITH_INPUT), ChatTemplate())
}


def get_template(name: str | None = None, file: str | os.PathLike | None = None) -> Template:
    """A template by name (``qa`` when neither is given), or the user's own from a file."""
    if name is not None and file is not None:
        raise InputError("give --template NAME or --template-file FILE, not both")
    if file is not None:
        return TextTemplate.from_file(file)
    name = name or "qa"
    if name not in TEMPLATES:
        raise InputError(f"unknown template {name!r}; templates: {', '.join(TEMPLATES)} "
                         "(or --template-file FILE for your own)")
    return TEMPLATES[name]
