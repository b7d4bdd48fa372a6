"""``fromzero chat`` end to end: scripted stdin through ``fromzero.cli.main``, and a real pseudo-terminal.

The models are tiny and random (character tokenizer), so their answers are gibberish; what is tested
is that every answer is exactly what the library's own decoding gives for the same prompt and the
same settings, so each command provably reaches the model. ``tuned`` is a LoRA adapter trained by
``fromzero.finetune.sft`` (1 epoch: barely moved from the base), ``loud`` the same adapter with
large random B weights, so that base and tuned visibly differ in ``compare``. ``chat`` is a model
folder whose record names the chat template (BPE tokenizer with the chat's special tokens), with
a short context, to see the history fill it.
"""

from __future__ import annotations

import io
import json
import os
import select
import shutil
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import pytest
import torch

from fromzero.chat.conversation import conversation_prompt
from fromzero.chat.repl import temperature_descriptor
from fromzero.cli import main
from fromzero.files import write_json
from fromzero.finetune.instructions import Message
from fromzero.finetune.lora import disabled_adapters, lora_layers, set_adapter
from fromzero.finetune.peft_format import load_adapter, save_adapter
from fromzero.finetune.templates import TEMPLATES
from fromzero.finetune.tuned import load_tuned
from fromzero.finetune.vocab import add_special_tokens
from fromzero.generation import GenerationConfig, generate
from fromzero.generation.stopping import finished_text
from fromzero.models import GPT, GPTConfig
from fromzero.tokenizers import BPETokenizer

FACTS = [("What colour is the sky?", "The sky is blue."), ("What do cats say?", "Cats say meow."),
         ("What do dogs say?", "Dogs say woof."), ("Where do fish live?", "Fish live in water.")]
Q = "What do cats say?"
COMMAND_WORDS = ("help", "quit", "clear", "temp", "topk", "topp", "tokens", "system", "reset", "compare", "adapter",
                 "save", "settings")


@pytest.fixture(scope="module")
def models(make_qa_models) -> dict[str, Path]:
    base, _ = make_qa_models("chat", FACTS)
    root = base.parent
    model = GPT.from_pretrained(root / "base")
    load_adapter(model, root / "tuned", "loud")
    torch.manual_seed(1)
    with torch.no_grad():
        for layer in lora_layers(model).values():
            layer.lora_B["loud"].weight.normal_(0, 0.5)
    save_adapter(model, root / "loud", "loud", base_model=str(root / "base"))
    shutil.copy(root / "tuned" / "finetune.json", root / "loud" / "finetune.json")

    bpe = add_special_tokens(BPETokenizer.train(" ".join(q + " " + a for q, a in FACTS) * 5, 300),
                             TEMPLATES["chat"].special_tokens)
    chat = GPT(GPTConfig.preset("tiny", vocab_size=bpe.vocab_size, block_size=64))
    with torch.no_grad():  # large random weights: what the model says depends on the whole prompt
        for weight in (p for p in chat.parameters() if p.dim() >= 2):
            weight.normal_(0, 0.5)
    chat.save_pretrained(root / "chat")
    bpe.save(root / "chat")
    write_json(root / "chat" / "finetune.json", {"method": "sft", "template": "chat"})
    return {name: root / name for name in ("base", "tuned", "loud", "chat")}


def chat(monkeypatch, capsys, args: list, stdin: str) -> tuple[int, str, str]:
    """Run ``fromzero chat ARGS`` with ``stdin`` as its input; returns (status, stdout, stderr)."""
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    status = main(["chat", *map(str, args)])
    out, err = capsys.readouterr()
    return status, out, err


def reference(folder: Path, question: str, *, adapters=(), adapter: str | None = None, base: bool = False,
              history=(), template: str | None = None, max_new_tokens: int = 40, temperature: float = 0.0,
              top_k: int | None = 50, top_p: float = 1.0, seed: int = 0, system: str | None = None) -> str:
    """The answer the library gives: the same prompt path, decoded by ``generate`` (not the chat's stream)."""
    tuned = load_tuned(str(folder), adapters, template)
    if adapter:
        set_adapter(tuned.model, adapter)
    config = GenerationConfig(max_new_tokens=max_new_tokens, do_sample=temperature > 0, temperature=temperature,
                              top_k=top_k, top_p=top_p, seed=seed, stop_strings=tuned.stop_strings,
                              eos_token_id=tuned.eos_ids or None)
    ids = conversation_prompt(tuned, [*history, Message("user", question)], max_new_tokens, system).ids
    with disabled_adapters(tuned.model) if base else nullcontext():
        output = generate(tuned.model, torch.tensor([ids]), config, tokenizer=tuned.tokenizer)
    return finished_text(tuned.tokenizer, output[0, len(ids):].tolist(), config)


def saved(path: Path) -> tuple[list[dict], str]:
    return json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))["entries"], \
        path.with_suffix(".md").read_text(encoding="utf-8")


def test_the_greedy_answer_is_the_one_generate_prints(models, monkeypatch, capsys):
    assert main(["generate", "--model", str(models["loud"]), "--prompt", Q, "--greedy", "--max-new-tokens", "40"]) == 0
    expected = capsys.readouterr().out
    status, out, _ = chat(monkeypatch, capsys, ["--model", models["loud"], "--temperature", 0, "--max-new-tokens", 40],
                          Q + "\n")
    assert status == 0 and out == expected
    assert len(expected.strip()) > 5  # a real answer, not an empty one that would match anything empty


def test_settings_commands_reach_the_model_and_settings_shows_them(models, monkeypatch, capsys, tmp_path):
    script = ["TEMP 0.2", "topk 5", "TopP 0.9", "tokens 12", Q, "topk off", "topp off", "temp 1.5", Q,
              "system Answer like a pirate.", "settings", "help", "clear", f"save {tmp_path / 'run'}"]
    status, out, err = chat(monkeypatch, capsys, ["--model", models["loud"], "--seed", 7], "\n".join(script) + "\n")
    assert status == 0 and "Traceback" not in out + err
    assert "temperature 0.2 (focused)" in err and "top-k 5" in err and "top-p 0.9" in err
    assert "temperature 1.5 (creative)" in err and "top-k off" in err and "top-p off" in err
    assert "only the chat template reads one (qa does not)" in err
    entries, _ = saved(tmp_path / "run")
    answers = [e for e in entries if e["role"] == "assistant"]
    assert answers[0]["content"] == reference(models["loud"], Q, max_new_tokens=12, temperature=0.2, top_k=5,
                                              top_p=0.9, seed=7)
    assert answers[1]["content"] == reference(models["loud"], Q, max_new_tokens=12, temperature=1.5, top_k=None,
                                              seed=8)  # answer n is sampled with seed + n
    assert answers[0]["content"] != answers[1]["content"]
    for shown in ("1.5 (creative)", "12 at most (context 96)", "Answer like a pirate.", "7 (answer n uses seed + n)"):
        assert shown in out
    for word in COMMAND_WORDS:
        assert word in out  # help lists every command
    assert "\x1b" not in out  # piped: plain text, `clear` wrote no escape codes


def test_the_temperature_descriptor_is_the_courses():
    assert [temperature_descriptor(t) for t in (0.01, 0.3, 0.31, 0.7, 0.71, 1.0, 1.01, 2.0)] == \
        ["focused", "focused", "balanced", "balanced", "natural", "natural", "creative", "creative"]


def test_bad_arguments_print_the_usage_and_the_session_goes_on(models, monkeypatch, capsys):
    bad = ["temp hot", "temp 0", "temp 2.5", "temp nan", "topk -1", "topk many", "topp 0", "topp 1.5", "tokens 0",
           "tokens 96", "tokens ten", "adapter", "save", "system", "compare"]
    status, out, err = chat(monkeypatch, capsys, ["--model", models["tuned"]], "\n".join(bad) + "\nsettings\n")
    assert status == 0 and "Traceback" not in out + err
    for line in bad:
        command = line.split()[0]
        assert f"usage: {command}" in err, line
    assert err.count("error: usage:") == len(bad)  # compare too: no question has been asked yet
    assert "compare [QUESTION]" in err and "1-95" in err
    assert "0.8 (natural)" in out  # nothing bad was applied; settings still ran


def test_compare_shows_the_base_with_adapters_off_beside_the_tuned_model(models, monkeypatch, capsys, tmp_path):
    script = [Q, "compare", "compare Where do fish live?", f"save {tmp_path / 'cmp.md'}"]
    status, out, err = chat(monkeypatch, capsys, ["--model", models["loud"], "--temperature", 0, "--max-new-tokens",
                                                  12], "\n".join(script) + "\n")
    assert status == 0, err
    entries, markdown = saved(tmp_path / "cmp")
    compares = [e for e in entries if e["role"] == "compare"]
    for entry, question in zip(compares, [Q, "Where do fish live?"], strict=True):
        base = reference(models["loud"], question, base=True, max_new_tokens=12)
        tuned = reference(models["loud"], question, max_new_tokens=12)
        assert (entry["base"], entry["content"], entry["speaker"]) == (base, tuned, "loud")
        assert base != tuned
        assert entry["settings"]["question"] == question
    assert "base (adapters off)" in out and "loud" in out
    assert "*base (adapters off):*" in markdown
    status, _, err = chat(monkeypatch, capsys, ["--model", models["base"], "--template", "none"], "compare\n")
    assert status == 0 and "compare needs a LoRA adapter" in err


def test_adapter_switches_between_the_loaded_adapters(models, monkeypatch, capsys, tmp_path):
    args = ["--model", models["tuned"], "--adapter", f"loud={models['loud']}", "--temperature", 0,
            "--max-new-tokens", 20]
    script = [Q, "adapter loud", Q, "adapter nobody", "adapter tuned", Q, f"save {tmp_path / 't'}"]
    status, _, err = chat(monkeypatch, capsys, args, "\n".join(script) + "\n")
    assert status == 0 and "Traceback" not in err and "answering with adapter loud" in err
    assert "unknown adapter 'nobody': the adapters are tuned, loud" in err
    entries, _ = saved(tmp_path / "t")
    answers = [(e["speaker"], e["content"]) for e in entries if e["role"] == "assistant"]
    adapters = [("loud", str(models["loud"]))]
    tuned_answer = reference(models["tuned"], Q, adapters=adapters, max_new_tokens=20)
    loud_answer = reference(models["tuned"], Q, adapters=adapters, adapter="loud", max_new_tokens=20)
    assert answers == [("tuned", tuned_answer), ("loud", loud_answer), ("tuned", tuned_answer)]
    assert tuned_answer != loud_answer
    status, _, err = chat(monkeypatch, capsys, ["--model", models["base"], "--template", "none"], "adapter x\n")
    assert status == 0 and "this model has no adapters" in err


def test_save_writes_a_json_and_a_markdown_transcript(models, monkeypatch, capsys, tmp_path):
    script = [Q, "temp 0.5", "What do dogs say?", f"save {tmp_path / 'deep' / 'talk.json'}"]
    status, _, err = chat(monkeypatch, capsys, ["--model", models["loud"], "--seed", 3], "\n".join(script) + "\n")
    assert status == 0 and "transcript saved to" in err
    record = json.loads((tmp_path / "deep" / "talk.json").read_text(encoding="utf-8"))
    assert record["template"] == "qa" and record["adapters"] == ["loud"]
    roles = [(e["role"], e["content"]) for e in record["entries"]]
    assert [r for r, _ in roles] == ["user", "assistant", "user", "assistant"]
    assert roles[0][1] == Q and roles[2][1] == "What do dogs say?"
    assert [e["settings"].get("temperature") for e in record["entries"][1::2]] == [0.8, 0.5]
    markdown = (tmp_path / "deep" / "talk.md").read_text(encoding="utf-8")
    assert f"**You:** {Q}" in markdown and "**loud:**" in markdown
    first_line = roles[1][1].split("\n")[0]
    assert (f"> {first_line}" if first_line else ">") in markdown.splitlines()
    assert not [p for p in (tmp_path / "deep").iterdir() if p.name.startswith(".")]  # no temporary files left


def test_the_chat_template_keeps_the_history_and_says_when_it_forgets(models, monkeypatch, capsys, tmp_path):
    questions = ["What do cats say?", "What colour is the sky?", "Where do fish live?", "What do dogs say?"]
    script = [*questions, "settings", f"save {tmp_path / 'h'}", "reset", "settings"]
    args = ["--model", models["chat"], "--temperature", 1, "--top-k", 0, "--seed", 0, "--max-new-tokens", 8,
            "--system", "Be brief."]
    status, out, err = chat(monkeypatch, capsys, args, "\n".join(script) + "\n")
    assert status == 0, err
    entries, _ = saved(tmp_path / "h")
    answers = [e["content"] for e in entries if e["role"] == "assistant"]
    history = [Message("user", questions[0]), Message("assistant", answers[0])]
    same = dict(max_new_tokens=8, temperature=1.0, top_k=None, seed=1, system="Be brief.")
    assert answers[1] == reference(models["chat"], questions[1], history=history, **same)
    assert answers[1] != reference(models["chat"], questions[1], **same)  # the first turn was in the prompt
    assert "the oldest 1 turn(s) are forgotten" in " ".join(err.split())
    turns = [int(line.split()[1]) for line in out.splitlines() if line.startswith("history")]
    assert turns[0] < len(questions) and turns[1] == 0  # trimmed, then reset
    assert "history cleared" in err


def test_one_question_templates_send_only_the_last_question(models, monkeypatch, capsys, tmp_path):
    questions = ["What do dogs say?", Q]
    script = [*questions, f"save {tmp_path / 'q'}"]
    status, _, _ = chat(monkeypatch, capsys, ["--model", models["loud"], "--temperature", 0, "--max-new-tokens", 20],
                        "\n".join(script) + "\n")
    assert status == 0
    entries, _ = saved(tmp_path / "q")
    assert [e["content"] for e in entries if e["role"] == "assistant"][1] == reference(models["loud"], Q,
                                                                                       max_new_tokens=20)


def test_plain_continuation_continues_each_line(models, monkeypatch, capsys):
    status, out, err = chat(monkeypatch, capsys, ["--model", models["base"], "--template", "none", "--seed", 5,
                                                  "--max-new-tokens", 30], "The sky\ntokens 10\nThe cat\n")
    assert status == 0 and "plain continuation" in err
    first = reference(models["base"], "The sky", template="none", max_new_tokens=30, temperature=0.8, seed=5)
    second = reference(models["base"], "The cat", template="none", max_new_tokens=10, temperature=0.8, seed=6)
    assert out == f"{first}\n{second}\n"
    assert second  # something was continued


def test_ctrl_c_stops_the_answer_and_the_session_goes_on(models, monkeypatch, capsys, tmp_path):
    import fromzero.chat.repl as repl

    real = repl.stream
    interrupted = []

    def stream(*args, **kwargs):
        pieces = real(*args, **kwargs)

        def cut():
            for i, piece in enumerate(pieces):
                if i == 2 and not interrupted:
                    interrupted.append(True)
                    raise KeyboardInterrupt
                yield piece
        return cut()

    monkeypatch.setattr(repl, "stream", stream)
    script = [Q, "What do dogs say?", f"save {tmp_path / 'c'}"]
    status, _, err = chat(monkeypatch, capsys, ["--model", models["loud"], "--temperature", 0],
                          "\n".join(script) + "\n")
    assert status == 0 and interrupted and "(stopped)" in err
    entries, _ = saved(tmp_path / "c")
    stopped, finished = [e for e in entries if e["role"] == "assistant"]
    full = reference(models["loud"], Q, max_new_tokens=48)
    assert stopped["note"] == "stopped" and stopped["content"] and full.startswith(stopped["content"])
    assert len(stopped["content"]) < len(full)
    assert finished["content"] == reference(models["loud"], "What do dogs say?", max_new_tokens=48)
    assert finished["note"] == ""


def test_end_of_input_ends_the_session_and_bad_flags_are_one_line(models, monkeypatch, capsys):
    status, out, err = chat(monkeypatch, capsys, ["--model", models["loud"], "--temperature", 0], f"{Q}")  # no newline
    assert status == 0 and out.strip()  # the last line was answered, then EOF ended it
    status, out, err = chat(monkeypatch, capsys, ["--model", models["loud"]], "quit\nWhat do dogs say?\n")
    assert status == 0 and out == ""  # nothing after quit is answered
    for flags, message in [(["--temperature", 3], "--temperature must be"), (["--top-p", 0], "--top-p must be"),
                           (["--max-new-tokens", 96], "--max-new-tokens must be between 1 and 95"),
                           (["--adapter", "a="], "give NAME=DIR")]:
        status, out, err = chat(monkeypatch, capsys, ["--model", models["loud"], *flags], "")
        assert status == 2 and message in err and "Traceback" not in err, flags


def test_help_explains_every_flag_and_imports_no_torch():
    import subprocess

    code = ("import sys\nfrom fromzero.cli import main\n"
            "try:\n    main(['chat', '--help'])\nexcept SystemExit:\n    pass\n"
            "print('torch' in sys.modules)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip().splitlines()[-1] == "False"
    for flag in ("--model", "--adapter", "--template", "--template-file", "--system", "--max-new-tokens",
                 "--temperature", "--top-k", "--top-p", "--seed", "--device", "--guard", "--guard-log"):
        assert flag in result.stdout


# ---- a real terminal ---------------------------------------------------------------------------

SLOW_CHAT = """\
import sys, time
from fromzero.models import GPT
forward = GPT.forward
def slow(self, *args, **kwargs):
    time.sleep(0.05)  # an answer of 80 tokens takes 4 s: long enough to interrupt
    return forward(self, *args, **kwargs)
GPT.forward = slow
from fromzero.cli import main
raise SystemExit(main(sys.argv[1:]))
"""


class NotYet(AssertionError):
    """The marker did not appear in time (the session itself is still there)."""


class Terminal:
    """The parent's end of a pseudo-terminal: what the session printed, read up to marker after marker."""

    def __init__(self, fd: int) -> None:
        self.fd, self.output, self.position = fd, bytearray(), 0

    def read_until(self, marker: bytes, timeout: float = 60) -> bytes:
        """Read until ``marker`` appears after the previous one; returns the output up to its end."""
        deadline = time.monotonic() + timeout
        while marker not in self.output[self.position:]:
            ready, _, _ = select.select([self.fd], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                raise NotYet(f"no {marker!r} in the terminal output: {self.tail()!r}")
            try:
                data = os.read(self.fd, 4096)
            except OSError:  # the child closed the terminal
                data = b""
            if not data:
                raise AssertionError(f"the session ended before {marker!r}: {self.tail()!r}")
            self.output += data
        start, self.position = self.position, self.output.index(marker, self.position) + len(marker)
        return bytes(self.output[start:self.position])

    def write(self, data: bytes) -> None:
        os.write(self.fd, data)

    def interrupt_until(self, marker: bytes, tries: int = 5) -> bytes:
        """Press Ctrl-C until ``marker`` appears, as a person would press it again.

        A Ctrl-C that lands after Python's ``input`` printed its prompt but before it began waiting
        for a key is only noticed at the next key or signal (a race inside CPython's readline loop),
        so one press may wait; a second one always gets through.
        """
        for _ in range(tries - 1):
            self.write(b"\x03")
            try:
                return self.read_until(marker, timeout=3)
            except NotYet:
                continue
        self.write(b"\x03")
        return self.read_until(marker)

    def tail(self) -> bytes:
        return bytes(self.output[-1500:])


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs a POSIX pseudo-terminal")
def test_a_real_terminal_ctrl_c_stops_the_answer_not_the_session(models):
    import pty

    argv = [sys.executable, "-c", SLOW_CHAT, "chat", "--model", str(models["base"]), "--template", "none",
            "--max-new-tokens", "80", "--seed", "1", "--temperature", "1.0", "--top-k", "0"]
    env = {**os.environ, "TERM": "xterm", "COLUMNS": "100"}
    pid, fd = pty.fork()
    if pid == 0:  # the child: the terminal is its stdin, stdout and stderr, and Ctrl-C signals it
        os.execve(sys.executable, argv, env)
    terminal, status = Terminal(fd), None
    try:
        terminal.read_until(b"prompt> ")
        terminal.write(b"The sky\n")
        terminal.read_until(b"model>")
        time.sleep(0.5)  # a few tokens in, of 80
        terminal.write(b"\x03")
        terminal.read_until(b"(stopped)")
        terminal.read_until(b"prompt> ")
        terminal.interrupt_until(b"Ctrl-D")  # at the prompt: a hint, the session stays
        terminal.read_until(b"prompt> ")
        terminal.write(b"settings\n")
        terminal.read_until(b"guard")
        terminal.write(b"quit\n")
        _, status = os.waitpid(pid, 0)
    finally:
        if status is None:  # a failed step: do not leave the session running
            os.kill(pid, 9)
            os.waitpid(pid, 0)
        os.close(fd)
    # "(stopped)" is what an interrupted answer says (Ctrl-C at the prompt says something else)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, terminal.tail()
    assert b"Traceback" not in terminal.output and b"interrupted" not in terminal.output
