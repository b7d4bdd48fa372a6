"""The terminal chat session of ``fromzero chat``: its settings, its commands and the read-answer loop.

A line is a command when its first word is one (case-insensitive) and it has the arguments that
command takes; anything else is a question. ``help me with fractions`` is therefore a question,
``temp 0.5`` a command and ``temp hot`` a command with a bad argument, which prints its usage.

Each question goes through the same path as the server's (:func:`~fromzero.chat.conversation.conversation_prompt`,
then :func:`~fromzero.generation.streaming.stream`): the ``chat`` template sees the whole history,
trimmed from the oldest turn when the context fills; one-question templates and plain continuation
(``--template none``) see only the last question. Answers are streamed to stdout, notes go to
stderr, so a script can pipe questions in and read answers out. Ctrl-C stops the answer being
written and keeps the session; end of input (Ctrl-D, or the end of a piped file) ends it.

Feedback becomes training data (:mod:`fromzero.chat.feedback`): ``good`` and ``bad`` rate the last
answer, ``edit`` takes a better version of it (typed on the next lines; the conversation then goes
on with it), and ``better 1|2`` after ``compare`` says which of its two answers was better. Each is
stored with the conversation, the prompt the model read, the template, the adapter and the settings.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any, Callable

from rich.markup import escape
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from fromzero.chat.conversation import conversation_prompt, question_with_context
from fromzero.chat.feedback import Feedback, FeedbackStore
from fromzero.chat.guard import Guard, mean_token_probability
from fromzero.chat.transcript import Transcript, save_transcript
from fromzero.console import console, stdout
from fromzero.embeddings.rag import source_line
from fromzero.errors import FromzeroError, InputError
from fromzero.finetune.batches import encode_text
from fromzero.finetune.instructions import Message
from fromzero.finetune.lora import active_adapter, disabled_adapters, set_adapter
from fromzero.finetune.templates import ChatTemplate
from fromzero.finetune.tuned import NO_TEMPLATE, TunedModel
from fromzero.generation.config import GenerationConfig
from fromzero.generation.streaming import stream

TEMPERATURE_RANGE = (0.01, 2.0)


def temperature_descriptor(temperature: float) -> str:
    """The course's word for a temperature: how adventurous sampling at it feels."""
    if temperature <= 0.3:
        return "focused"
    if temperature <= 0.7:
        return "balanced"
    if temperature <= 1.0:
        return "natural"
    return "creative"


@dataclass
class Settings:
    """The knobs a session can turn while it runs (``settings`` shows them)."""

    max_new_tokens: int
    temperature: float = 0.8  # 0: greedy (from --temperature only; `temp` keeps to TEMPERATURE_RANGE)
    top_k: int | None = 50  # None: off
    top_p: float | None = None  # None: off
    system: str | None = None
    seed: int = 0  # answer n is sampled with seed + n, so a session repeats exactly with the same --seed

    def describe_temperature(self) -> str:
        if self.temperature <= 0:
            return "0 (greedy)"
        return f"{self.temperature:g} ({temperature_descriptor(self.temperature)})"


@dataclass(frozen=True)
class Command:
    usage: str
    help: str
    run: Callable[["Session", str], bool]  # returns False to end the session
    argument: str = "none"  # "none", "required" or "optional"


class Session:
    """One conversation with ``tuned``; :meth:`run` reads lines until quit or end of input."""

    def __init__(self, tuned: TunedModel, settings: Settings, guard: Guard | None = None, name: str = "model",
                 interactive: bool = False, retriever: Any = None, feedback: FeedbackStore | None = None) -> None:
        self.tuned, self.settings, self.guard, self.interactive = tuned, settings, guard, interactive
        self.retriever = retriever  # fromzero.embeddings.rag.Retriever: answers from your documents
        self.feedback = feedback or FeedbackStore()  # where good, bad, edit and better go
        self.history: list[Message] = []  # the turns the model sees (system prompt apart)
        self.last_question: str | None = None
        self.last_answer: dict[str, Any] | None = None  # the Feedback fields of the last answer (good, bad, edit)
        self.last_compare: dict[str, Any] | None = None  # the Feedback fields of compare's two answers (better)
        self.read_line: Callable[[str], str] = input
        self.answers = 0
        template = tuned.template.name if tuned.template else NO_TEMPLATE
        self.transcript = Transcript(name, template, list(tuned.adapters))

    # ---- the loop -------------------------------------------------------------------------------

    def run(self, read_line: Callable[[str], str] = input) -> int:
        self.read_line = read_line  # `edit` reads the better answer from the following lines
        prompt = ("prompt> " if self.tuned.template is None else "you> ") if self.interactive else ""
        while True:
            try:
                line = read_line(prompt)
            except EOFError:
                if self.interactive:
                    print()
                return 0
            except KeyboardInterrupt:
                console.print("\n[dim](type quit, or press Ctrl-D, to leave)[/]")
                continue
            try:
                if not self.handle(line.strip()):
                    return 0
            except FromzeroError as err:
                console.print(f"[bold red]error:[/] {escape(str(err))}", soft_wrap=True)
            except KeyboardInterrupt:  # between two pieces of work (the answer itself catches its own)
                console.print("\n[yellow](stopped)[/]")

    def handle(self, line: str) -> bool:
        """Run one line: a command, or a question. False means the session should end."""
        if not line:
            return True
        word, _, rest = line.partition(" ")
        command = COMMANDS.get(word.lower())
        rest = rest.strip()
        if command is None or (command.argument == "none" and rest):
            self.ask(line)
            return True
        if command.argument == "required" and not rest:
            raise InputError(_usage(word.lower()))
        return command.run(self, rest)

    # ---- answering ------------------------------------------------------------------------------

    def generation_config(self) -> GenerationConfig:
        """The decoding settings of the next answer: the session's knobs, the template's stops."""
        s, model = self.settings, self.tuned.model
        eos = self.tuned.eos_ids or ([model.config.eos_token_id] if model.config.eos_token_id is not None else [])
        return GenerationConfig(
            max_new_tokens=s.max_new_tokens, do_sample=s.temperature > 0, temperature=s.temperature,
            top_k=s.top_k, top_p=s.top_p or 1.0, stop_strings=self.tuned.stop_strings,
            eos_token_id=eos or None, pad_token_id=eos[0] if eos else None, seed=s.seed + self.answers,
        ).validate()

    def ask(self, question: str) -> None:
        self.last_question = question
        self.last_answer = None
        self.transcript.add("user", question)
        if self._refused(question):
            return
        config = self.generation_config()
        asked, sources = self._with_context(question, config)
        prompt = conversation_prompt(self.tuned, [*self.history, Message("user", asked)],
                                     config.max_new_tokens, self.settings.system)
        if prompt.dropped_turns:
            self._forget(prompt.dropped_turns)
        speaker = self._speaker()
        answer, stopped = self._stream_answer(prompt.ids, config, speaker)
        for line in sources:
            stdout.print(f"[dim]{escape(line)}[/]", soft_wrap=True)
        self.answers += 1
        self.last_answer = self._answered([*self.history, Message("user", question)], answer, prompt.ids,
                                          speaker if self.tuned.adapters else None, config)
        self.history += [Message("user", question), Message("assistant", answer)]
        note = "stopped" if stopped else ""
        if self.guard is not None and not stopped:
            answer_ids = encode_text(self.tuned.tokenizer, answer)
            probability = mean_token_probability(self.tuned.model, prompt.ids, answer_ids)
            note = self.guard.confidence_note(probability) or ""
            if note:
                stdout.print(f"[yellow]{escape(note)}[/]")
        self.transcript.add("assistant", answer, speaker=speaker, settings=self._record(config), note=note)
        if sources:
            self.transcript.add("sources", "\n".join(sources))

    def _with_context(self, question: str, config: GenerationConfig) -> tuple[str, list[str]]:
        """With ``--rag``: the question with the retrieved chunks that fit, and their source lines."""
        if self.retriever is None:
            return question, []
        asked, used = question_with_context(self.tuned, [*self.history, Message("user", question)],
                                            self.retriever.retrieve(question), config.max_new_tokens,
                                            self.settings.system)
        if not used:
            return question, ["sources: none (no retrieved text fits in the model's context beside the question)"]
        return asked, [source_line(rank, hit) for rank, hit in enumerate(used, start=1)]

    def _refused(self, question: str) -> bool:
        refusal = self.guard.check(question) if self.guard is not None else None
        if refusal is None:
            return False
        stdout.print(f"[yellow]{escape(refusal.message)}[/]")
        self.transcript.add("refusal", refusal.message, note=refusal.category)
        return True

    def _forget(self, dropped: int) -> None:
        """Drop the ``dropped`` oldest turns from the history for good (they no longer fit), and say so."""
        starts = [i for i, message in enumerate(self.history) if message.role == "user"]
        self.history = self.history[starts[dropped]:] if dropped < len(starts) else []
        console.print(f"[yellow]note:[/] the conversation no longer fits the model's context of "
                      f"{self.tuned.model.config.block_size} tokens: the oldest {dropped} turn(s) are forgotten")

    def _stream_answer(self, ids: list[int], config: GenerationConfig, speaker: str) -> tuple[str, bool]:
        """Print the answer as it comes; Ctrl-C stops it. Returns the text and whether it was stopped."""
        pieces: list[str] = []
        if self.interactive:
            stdout.print(f"[bold cyan]{escape(speaker)}>[/] ", end="")
        try:
            for piece in stream(self.tuned.model, self.tuned.tokenizer, ids, config):
                pieces.append(piece)
                sys.stdout.write(piece)
                sys.stdout.flush()
        except KeyboardInterrupt:
            sys.stdout.write("\n")
            console.print("[yellow](stopped)[/]")
            return "".join(pieces), True
        sys.stdout.write("\n")
        sys.stdout.flush()
        if not pieces:
            console.print("[dim](the model ended its answer at once)[/]")
        return "".join(pieces), False

    def _speaker(self) -> str:
        return active_adapter(self.tuned.model) if self.tuned.adapters else "model"

    def _answered(self, messages: list[Message], answer: str, ids: list[int], adapter: str | None,
                  config: GenerationConfig) -> dict[str, Any]:
        """What a feedback record says about an answer besides the verdict (:class:`Feedback`'s fields)."""
        system = [{"role": "system", "content": self.settings.system}] if self.settings.system else []
        return {"messages": system + [{"role": m.role, "content": m.content} for m in messages], "answer": answer,
                "prompt": self.tuned.tokenizer.decode(ids), "template": self.transcript.template,
                "model": self.transcript.model, "adapter": adapter, "settings": self._record(config), "origin": "chat"}

    def _store(self, feedback: Feedback) -> None:
        stored = self.feedback.add(feedback)
        verdict = feedback.rating if feedback.kind == "rating" else feedback.kind
        console.print(f"[green]stored[/] {verdict} ({stored.id}) in {escape(str(self.feedback.path))}", soft_wrap=True)

    def _record(self, config: GenerationConfig) -> dict:
        s = self.settings
        return {"temperature": s.temperature, "top_k": s.top_k or "off", "top_p": s.top_p or "off",
                "tokens": s.max_new_tokens, "seed": config.seed}

    # ---- commands -------------------------------------------------------------------------------

    def help(self, _: str) -> bool:
        table = Table(show_header=False, box=None, pad_edge=False)
        table.add_column(style="bold")
        table.add_column()
        seen: set[str] = set()
        for command in COMMANDS.values():
            if command.usage not in seen:
                seen.add(command.usage)
                table.add_row(command.usage, command.help)
        stdout.print(table)
        stdout.print("[dim]Anything else is a question for the model. Ctrl-C stops an answer; Ctrl-D leaves.[/]")
        return True

    def quit(self, _: str) -> bool:
        return False

    def clear(self, _: str) -> bool:
        if stdout.is_terminal:  # piped output gets no escape codes
            stdout.clear()
        return True

    def temp(self, value: str) -> bool:
        low, high = TEMPERATURE_RANGE
        self.settings.temperature = _number(value, float, low, high, _usage("temp"))
        console.print(f"temperature {self.settings.describe_temperature()}")
        return True

    def topk(self, value: str) -> bool:
        self.settings.top_k = None if value.lower() == "off" else _number(value, int, 1, None, _usage("topk"))
        console.print(f"top-k {self.settings.top_k or 'off'}")
        return True

    def topp(self, value: str) -> bool:
        self.settings.top_p = None if value.lower() == "off" else _number(value, float, 0.01, 1.0, _usage("topp"))
        console.print(f"top-p {self.settings.top_p or 'off'}")
        return True

    def tokens(self, value: str) -> bool:
        most = self.tuned.model.config.block_size - 1
        usage = _usage("tokens") + f", 1-{most} (the model's context is {most + 1} tokens, the question included)"
        self.settings.max_new_tokens = _number(value, int, 1, most, usage)
        console.print(f"answers of at most {self.settings.max_new_tokens} tokens")
        return True

    def system(self, text: str) -> bool:
        self.settings.system = text
        if isinstance(self.tuned.template, ChatTemplate):
            console.print("system prompt set")
        else:
            which = self.tuned.template.name if self.tuned.template else "plain continuation"
            console.print(f"[yellow]note:[/] system prompt kept, but only the chat template reads one "
                          f"({which} does not)")
        return True

    def reset(self, _: str) -> bool:
        self.history.clear()
        console.print("history cleared: the next question starts a new conversation")
        return True

    def compare(self, question: str) -> bool:
        """The same question, asked on its own, to the base model (adapters off) and the tuned one."""
        if not self.tuned.adapters:
            raise InputError("compare needs a LoRA adapter to switch off, and this model has none: load one with "
                             "--adapter NAME=DIR, or give an adapter folder as --model")
        question = question or self.last_question
        if not question:
            raise InputError(_usage("compare") + " (ask a question first, or give one)")
        if self._refused(question):
            return True
        config = self.generation_config()
        ids = conversation_prompt(self.tuned, [Message("user", question)], config.max_new_tokens,
                                  self.settings.system).ids
        speaker = self._speaker()
        try:
            with console.status("the base model is answering"), disabled_adapters(self.tuned.model):
                base = "".join(stream(self.tuned.model, self.tuned.tokenizer, ids, config))
            with console.status(f"{speaker} is answering"):
                tuned = "".join(stream(self.tuned.model, self.tuned.tokenizer, ids, config))
        except KeyboardInterrupt:
            console.print("[yellow](compare stopped)[/]")
            return True
        self.answers += 1
        grid = Table.grid(expand=True, padding=(0, 1))
        grid.add_column(ratio=1)
        grid.add_column(ratio=1)
        grid.add_row(Panel(Text(base or "(nothing)", overflow="fold"), title="base (adapters off)"),
                     Panel(Text(tuned or "(nothing)", overflow="fold"), title=speaker))
        stdout.print(Text(question, style="bold"))
        stdout.print(grid)
        self.transcript.add("compare", tuned, speaker=speaker, base=base,
                            settings={"question": question, **self._record(config)})
        self.last_compare = {**self._answered([Message("user", question)], base, ids, None, config),
                             "other": tuned, "other_adapter": speaker}
        return True

    def good(self, _: str) -> bool:
        self._store(Feedback("rating", rating="up", **self._last_answer("good")))
        return True

    def bad(self, _: str) -> bool:
        self._store(Feedback("rating", rating="down", **self._last_answer("bad")))
        return True

    def edit(self, _: str) -> bool:
        """Read a better version of the last answer (until an empty line), store it, and go on with it."""
        answered = self._last_answer("edit")
        console.print("[dim]type the better answer; an empty line (or the end of input) ends it[/]")
        lines = []
        while True:
            try:
                line = self.read_line("better> " if self.interactive else "")
            except EOFError:
                break
            if not line.strip():
                break
            lines.append(line.rstrip())
        better = "\n".join(lines).strip()
        if not better:
            raise InputError("no better answer was typed: nothing stored")
        self._store(Feedback("edit", better=better, **answered))
        if self.history and self.history[-1] == Message("assistant", answered["answer"]):
            self.history[-1] = Message("assistant", better)  # the model now reads the answer as it should have been
        return True

    def better(self, which: str) -> bool:
        if which not in ("1", "2"):
            raise InputError(_usage("better"))
        if self.last_compare is None:
            raise InputError("better 1|2 picks one of the two answers of compare: run compare first")
        self._store(Feedback("choice", chosen=int(which), **self.last_compare))
        return True

    def _last_answer(self, command: str) -> dict[str, Any]:
        if self.last_answer is None:
            raise InputError(f"{command} is about the last answer, and there is none yet: ask a question first")
        return self.last_answer

    def adapter(self, name: str) -> bool:
        names = list(self.tuned.adapters)
        if not names:
            raise InputError("this model has no adapters to switch between: load them with --adapter NAME=DIR")
        if name not in names:
            raise InputError(f"unknown adapter {name!r}: the adapters are {', '.join(names)}")
        set_adapter(self.tuned.model, name)
        console.print(f"answering with adapter {name}")
        return True

    def save(self, path: str) -> bool:
        json_path, md_path = save_transcript(self.transcript, path)
        console.print(f"transcript saved to {json_path} and {md_path}")
        return True

    def show_settings(self, _: str) -> bool:
        s, tuned = self.settings, self.tuned
        table = Table(show_header=False, box=None, pad_edge=False)
        table.add_column(style="bold")
        table.add_column()
        chat = isinstance(tuned.template, ChatTemplate)
        adapters = f"{active_adapter(tuned.model)} (of {', '.join(tuned.adapters)})" if tuned.adapters else "none"
        rows = [
            ("model", self.transcript.model),
            ("template", tuned.template.name if tuned.template else "none (plain continuation)"),
            ("adapter", adapters),
            ("temperature", s.describe_temperature()),
            ("top-k", str(s.top_k or "off")),
            ("top-p", str(s.top_p or "off")),
            ("tokens", f"{s.max_new_tokens} at most (context {tuned.model.config.block_size})"),
            ("system", s.system or ("(the template's default)" if chat else "(none)")),
            ("seed", f"{s.seed} (answer n uses seed + n)"),
            ("guard", "on" if self.guard else "off"),
            ("history", f"{len(self.history) // 2} turn(s)"),
        ]
        for key, value in rows:
            table.add_row(key, Text(value))
        stdout.print(table)
        return True


def _usage(name: str) -> str:
    command = COMMANDS[name]
    return f"usage: {command.usage} — {command.help}"


def _number(text: str, kind: type, low: float, high: float | None, usage: str) -> float:
    """``text`` as an int or float in [low, high], else ``usage`` as the error."""
    try:
        value = kind(text)
    except ValueError:
        value = None
    if value is None or not low <= value <= (high if high is not None else value):  # NaN fails too
        raise InputError(usage)
    return value


_QUIT = Command("quit | exit | q", "end the session (Ctrl-D too)", Session.quit)
COMMANDS: dict[str, Command] = {
    "help": Command("help", "this list", Session.help),
    "quit": _QUIT, "exit": _QUIT, "q": _QUIT,
    "clear": Command("clear", "clear the screen (the history stays)", Session.clear),
    "temp": Command("temp V", "sampling temperature, 0.01-2.0: <= 0.3 focused, <= 0.7 balanced, <= 1.0 natural, "
                    "else creative", Session.temp, "required"),
    "topk": Command("topk K|off", "sample among the K most likely tokens only (off: all)", Session.topk, "required"),
    "topp": Command("topp P|off", "sample from the smallest set of tokens with total probability P, 0.01-1 "
                    "(off: all)", Session.topp, "required"),
    "tokens": Command("tokens N", "answers of at most N tokens", Session.tokens, "required"),
    "system": Command("system TEXT", "the system prompt (read by the chat template)", Session.system, "required"),
    "reset": Command("reset", "forget the conversation so far", Session.reset),
    "compare": Command("compare [QUESTION]", "the last question (or QUESTION) from the base model with the adapters "
                       "off and from the tuned model, side by side", Session.compare, "optional"),
    "good": Command("good", "the last answer was good: a rating up, stored as training data "
                    "(fromzero feedback export)", Session.good),
    "bad": Command("bad", "the last answer was bad: a rating down, stored as training data", Session.bad),
    "edit": Command("edit", "type a better version of the last answer (an empty line ends it): stored, and the "
                    "conversation goes on with it", Session.edit),
    "better": Command("better 1|2", "after compare: which answer was better (1: base, 2: tuned), stored as "
                      "training data", Session.better, "required"),
    "adapter": Command("adapter NAME", "answer with another of the loaded adapters", Session.adapter, "required"),
    "save": Command("save FILE", "save the transcript as FILE.json and FILE.md", Session.save, "required"),
    "settings": Command("settings", "show the current settings", Session.show_settings),
}  # fmt: skip
