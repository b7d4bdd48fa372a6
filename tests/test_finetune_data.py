"""Instruction data for fine-tuning: reading records, the templates' exact text, labels, batches, new
tokens, and ``fromzero finetune prepare`` with its one-line errors."""

from __future__ import annotations

import io
import json
import re
import shutil
import statistics
import string
import subprocess
import sys

import pytest
import torch
from rich.console import Console

from fromzero.cli import main
from fromzero.commands import finetune as finetune_command
from fromzero.console import console
from fromzero.data import train_val_split
from fromzero.errors import CorruptFileError, InputError, MissingFileError
from fromzero.finetune.batches import IGNORE_INDEX, TokenizedExample, build_sft_data, collate, encode_example, pack
from fromzero.finetune.batches import encode_prompt
from fromzero.finetune.instructions import Example, Message, load_instructions, load_preferences
from fromzero.finetune.templates import TEMPLATES, get_template
from fromzero.finetune.vocab import add_special_tokens, resize_token_embeddings
from fromzero.models import GPT, GPTConfig
from fromzero.tokenizers import BPETokenizer, CharTokenizer, load_tokenizer

QA_RECORD = {"instruction": "Why is the sky blue?", "input": "", "output": "Air scatters blue light most."}


def qa(question: str = QA_RECORD["instruction"], answer: str = QA_RECORD["output"], context: str = "") -> Example:
    return Example((Message("user", question), Message("assistant", answer)), context)


def write_jsonl(path, records) -> str:
    path.write_text("".join(json.dumps(r) + "\n" if isinstance(r, dict) else r for r in records), encoding="utf-8")
    return str(path)


@pytest.fixture
def gpt2(gpt2_files):
    """GPT-2's tokenizer, its vocabulary copied into this test's $FROMZERO_HOME as the CLI finds it."""
    from fromzero.tokenizers.gpt2 import gpt2_dir

    gpt2_dir().mkdir(parents=True, exist_ok=True)
    shutil.copy(gpt2_files["gpt2.tiktoken"], gpt2_dir() / "gpt2.tiktoken")
    return BPETokenizer.gpt2(download=False)


@pytest.fixture
def char():
    """A character tokenizer that knows every character of the tests' records and templates."""
    return CharTokenizer.train("### Question:\nAnswer.? " + string.ascii_letters + string.digits)


# ----- reading --------------------------------------------------------------------------------


def test_alpaca_course_and_chat_records_become_examples(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [
        {"instruction": "Solve for x.", "input": " 3x = 6 ", "output": "x = 2\n"},
        {"question": "What is 2 + 2?", "answer": "4"},
        {"instruction": "Name a colour.", "question": "ignored", "response": "Red", "answer": "no", "output": "no"},
        {"question": "Capital of India?", "output": "New Delhi"},
        {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                      {"role": "assistant", "content": "Hello"}, {"role": "user", "content": "Bye"},
                      {"role": "assistant", "content": "Goodbye"}]},
    ])  # fmt: skip
    examples = load_instructions(path)
    assert examples[0] == qa("Solve for x.", "x = 2", "3x = 6")  # texts are stripped
    assert examples[1] == qa("What is 2 + 2?", "4")
    assert examples[2] == qa("Name a colour.", "Red")  # instruction before question; response before answer, output
    assert examples[3] == qa("Capital of India?", "New Delhi")
    chat = examples[4]
    assert chat.system == "Be brief." and [m.role for m in chat.turns] == ["user", "assistant", "user", "assistant"]
    assert examples[0].source == "d.jsonl line 1"


def test_a_json_list_reads_like_jsonl(tmp_path):
    path = tmp_path / "alpaca_data.json"
    path.write_text(json.dumps([QA_RECORD, {"instruction": "Add.", "input": "2, 3", "output": "5"}]), encoding="utf-8")
    assert load_instructions(path) == [qa(), qa("Add.", "5", "2, 3")]


def test_education_qa_by_name_is_its_train_part():
    assert len(load_instructions("education_qa")) == 508
    assert len(load_instructions("education_qa/test")) == 86  # the held-out part only when named


def test_bundled_preferences_load_as_pairs():
    pairs = load_preferences()
    assert len(pairs) == 172 and all(pair.chosen != pair.rejected for pair in pairs)
    assert pairs[0].prompt == "Why do we see lightning before we hear thunder?"


@pytest.mark.parametrize(
    "records, error, message",
    [
        ([QA_RECORD, '{"instruction": "x", \n'], CorruptFileError, "line 2: not valid JSON"),
        ([QA_RECORD, {"instruction": "Why?", "subject": "science"}], CorruptFileError,
         "line 2: the record has no answer field (response or answer or output; its fields: instruction, subject)"),
        ([{"text": "a story", "id": 3}], InputError, "no record has any of the fields instruction, question, "
         "messages (its fields: text, id)"),
        ([QA_RECORD, {"instruction": "Why?", "output": "  "}], CorruptFileError, "line 2: 'output' is empty"),
        ([QA_RECORD, {"instruction": 3, "output": "x"}], CorruptFileError, "line 2: 'instruction' holds int, not text"),
        ([{"messages": [{"role": "user", "content": "Hi"}, {"role": "bot", "content": "Hello"}]}], CorruptFileError,
         "line 1: message 2 has the unknown role 'bot' (roles: system, user, assistant)"),
        ([{"messages": [{"role": "user", "content": "Hi"}, {"role": "system", "content": "x"},
                        {"role": "assistant", "content": "Hello"}]}], CorruptFileError,
         "message 2 is a system message; only the first message may be one"),
        ([{"messages": [{"role": "assistant", "content": "Hi"}, {"role": "user", "content": "Hello"}]}],
         CorruptFileError, "must end with an assistant message"),
        ([{"messages": [{"role": "user"}, {"role": "assistant", "content": "Hello"}]}], CorruptFileError,
         "message 1 needs 'role' and 'content' (it has: role)"),
        ([{"messages": []}], CorruptFileError, "'messages' must be a non-empty list"),
    ],
)  # fmt: skip
def test_bad_records_are_one_clear_error_with_their_line(tmp_path, records, error, message):
    path = write_jsonl(tmp_path / "d.jsonl", records)
    with pytest.raises(error) as caught:
        load_instructions(path)
    assert message in str(caught.value) and "\n" not in str(caught.value)
    if error is CorruptFileError:
        assert "--skip-bad" in str(caught.value)


def test_skip_bad_skips_bad_records_with_a_warning(tmp_path, capsys):
    path = write_jsonl(tmp_path / "d.jsonl", [QA_RECORD, "not json\n", {"instruction": "Why?"}, QA_RECORD])
    assert load_instructions(path, skip_bad=True) == [qa(), qa()]
    assert "skipped 2 bad line(s)" in capsys.readouterr().err


def test_bad_records_of_a_json_list_are_named_by_number(tmp_path):
    path = tmp_path / "d.json"
    path.write_text(json.dumps([QA_RECORD, "text", QA_RECORD]), encoding="utf-8")
    with pytest.raises(CorruptFileError, match="record 2: expected a JSON object, got str"):
        load_instructions(path)
    path.write_text('[{"instruction": ', encoding="utf-8")
    with pytest.raises(CorruptFileError, match="is not valid JSON"):
        load_instructions(path)


@pytest.mark.parametrize("content, message", [("", "is empty"), ("[]", "holds an empty list: there are no records"), ("\n\n", "is empty")])
def test_empty_data_is_an_error(tmp_path, content, message):
    for name in ("d.jsonl", "d.json"):
        if name == "d.jsonl" and content == "[]":
            continue
        (tmp_path / name).write_text(content, encoding="utf-8")
        with pytest.raises(InputError, match=message):
            load_instructions(tmp_path / name)


def test_a_text_corpus_is_not_instruction_data():
    with pytest.raises(InputError, match="stories is a text corpus, not instruction data"):
        load_instructions("stories")


@pytest.mark.parametrize(
    "record, message",
    [
        ({"prompt": "Why?", "chosen": "Because.", "rejected": " Because. "},
         "line 2: 'chosen' and 'rejected' are the same answer"),
        ({"prompt": "Why?", "chosen": "Because."},
         "line 2: the record has no 'rejected' field (its fields: prompt, chosen)"),
    ],
)  # fmt: skip
def test_bad_preference_pairs_are_refused(tmp_path, record, message):
    good = {"prompt": "Hi?", "chosen": "Hello.", "rejected": "Go away."}
    path = write_jsonl(tmp_path / "p.jsonl", [good, record])
    with pytest.raises(CorruptFileError, match=re.escape(message)):
        load_preferences(path)
    assert [pair.chosen for pair in load_preferences(path, skip_bad=True)] == ["Hello."]


# ----- templates ------------------------------------------------------------------------------


def test_qa_template_text_and_prompt():
    template = get_template("qa")
    assert template.text(qa()) == "### Question:\nWhy is the sky blue?\n\n### Answer:\nAir scatters blue light most."
    assert template.prompt(qa()) == "### Question:\nWhy is the sky blue?\n\n### Answer:\n"
    # qa has no Input section: a record's input follows its instruction after a blank line
    with_input = qa("Solve for x.", "x = 2", "3x = 6")
    assert template.text(with_input) == "### Question:\nSolve for x.\n\n3x = 6\n\n### Answer:\nx = 2"
    assert get_template() is template  # the default


def test_alpaca_template_text_with_and_without_input():
    template = get_template("alpaca")
    assert template.text(qa("Name a colour.", "Red")) == (
        "Below is an instruction that describes a task. Write a response that appropriately completes the request."
        "\n\n### Instruction:\nName a colour.\n\n### Response:\nRed"
    )
    assert template.text(qa("Add the numbers.", "5", "2, 3")) == (
        "Below is an instruction that describes a task, paired with an input that provides further context. "
        "Write a response that appropriately completes the request."
        "\n\n### Instruction:\nAdd the numbers.\n\n### Input:\n2, 3\n\n### Response:\n5"
    )
    assert template.prompt(qa("Add the numbers.", "5", "2, 3")).endswith("### Input:\n2, 3\n\n### Response:\n")


def test_chat_template_text_multi_turn_and_prompt():
    template = get_template("chat")
    conversation = Example((Message("system", "Be brief."), Message("user", "Hi"), Message("assistant", "Hello"),
                            Message("user", "Bye"), Message("assistant", "Goodbye")))
    assert template.text(conversation) == (
        "<|system|>\nBe brief.<|end|>\n<|user|>\nHi<|end|>\n<|assistant|>\nHello<|end|>\n"
        "<|user|>\nBye<|end|>\n<|assistant|>\nGoodbye<|end|>"
    )
    assert template.prompt(conversation) == (
        "<|system|>\nBe brief.<|end|>\n<|user|>\nHi<|end|>\n<|assistant|>\nHello<|end|>\n"
        "<|user|>\nBye<|end|>\n<|assistant|>\n"
    )
    assert template.text(qa("Hi", "Hello")) == (
        "<|system|>\nYou are a helpful assistant.<|end|>\n<|user|>\nHi<|end|>\n<|assistant|>\nHello<|end|>"
    )
    answers = [s.text for s in template.render(conversation) if s.answer]
    assert answers == ["Hello", "<|end|>", "Goodbye", "<|end|>"]  # every assistant turn is trained


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_the_inference_prompt_is_the_training_text_up_to_the_answer(name):
    example = qa("Add the numbers.", "5", "2, 3")
    template = get_template(name)
    segments = template.render(example)
    first_answer = next(i for i, s in enumerate(segments) if s.answer)
    assert "".join(s.text for s in segments[:first_answer]) == template.prompt(example)


def test_single_turn_templates_refuse_conversations():
    conversation = Example((Message("user", "Hi"), Message("assistant", "Hello"), Message("user", "Bye"),
                            Message("assistant", "Goodbye")), source="d.jsonl line 4")
    with pytest.raises(InputError, match="d.jsonl line 4 is a conversation of 4 messages; the qa template.*chat"):
        get_template("qa").text(conversation)
    with pytest.raises(InputError, match="system message, which only the chat template shows"):
        get_template("alpaca").text(Example((Message("system", "x"), *qa().messages)))


def test_a_template_file_is_a_users_own_template(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("Q: {instruction}\nContext: {input}\nA: {response} [done]\n", encoding="utf-8")
    template = get_template(file=path)
    assert template.text(qa("Add.", "5", "2, 3")) == "Q: Add.\nContext: 2, 3\nA: 5 [done]"  # one final newline dropped
    assert template.prompt(qa("Add.", "5", "2, 3")) == "Q: Add.\nContext: 2, 3\nA: "
    assert [s.text for s in template.render(qa("Add.", "5"))if s.answer] == ["5 [done]"]
    path.write_text("Literal {{braces}}: {instruction} -> {response}", encoding="utf-8")
    assert get_template(file=path).text(qa("x", "y")) == "Literal {braces}: x -> y"


@pytest.mark.parametrize(
    "text, message",
    [
        ("Q: {instruction}\nA:", "has no {response} placeholder"),
        ("Q: {instruction}\nA: {response} {response}", "has {response} more than once"),
        ("Q: {question}\nA: {response}",
         "has the unknown placeholder {question}; placeholders: {instruction}, {input}, {response}"),
        ("Q: {instruction}\nA: {response}\n({input})", "{response} must be the last placeholder"),
        ("A: {response}", "has no {instruction} placeholder"),
        ("Q: {instruction!r} A: {response}", "placeholders take no format or conversion"),
        ("Q: {instruction} {oops A: {response}", "is not a valid template"),
        ("no placeholders at all", "has no {response} placeholder"),
    ],
)  # fmt: skip
def test_bad_template_files_are_one_clear_error(tmp_path, text, message):
    path = tmp_path / "t.txt"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(InputError) as caught:
        get_template(file=path)
    assert message in str(caught.value) and str(path) in str(caught.value)


def test_unknown_template_and_both_template_flags():
    with pytest.raises(InputError, match="unknown template 'vicuna'; templates: qa, alpaca, chat"):
        get_template("vicuna")
    with pytest.raises(InputError, match="--template NAME or --template-file FILE, not both"):
        get_template("qa", "t.txt")
    with pytest.raises(MissingFileError):
        get_template(file="absent.txt")


# ----- labels, lengths, batches ---------------------------------------------------------------


def test_labels_mask_the_prompt_and_train_the_answer_and_the_end(char):
    template = get_template("qa")
    ids, answer = encode_example(char, template, qa("Why?", "Because."))
    prompt = char.encode("### Question:\nWhy?\n\n### Answer:\n")
    end = char.encode("\n\n\n")  # a character tokenizer ends a text with the blank-line document separator
    assert ids == prompt + char.encode("Because.") + end
    (example,) = build_sft_data([qa("Why?", "Because.")], template, char, max_length=100).examples
    assert example.labels == [IGNORE_INDEX] * len(prompt) + ids[len(prompt):]
    assert encode_prompt(char, template, qa("Why?", "Because.")) == prompt
    (whole,) = build_sft_data([qa("Why?", "Because.")], template, char, 100, train_on_prompt=True).examples
    assert whole.labels == whole.input_ids


def test_gpt2_examples_end_with_endoftext_and_chat_tokens_are_new_ids(gpt2):
    (example,) = build_sft_data([qa()], get_template("qa"), gpt2, max_length=100).examples
    assert example.input_ids[-1] == 50256 and example.labels[-1] == 50256
    assert gpt2.decode([i for i in example.labels if i != IGNORE_INDEX]) == "Air scatters blue light most.<|endoftext|>"

    chat = get_template("chat")
    with pytest.raises(InputError, match=r"has no <\|system\|> token"):
        build_sft_data([qa()], chat, gpt2, 100)
    tokenizer = add_special_tokens(gpt2, chat.special_tokens)
    assert [tokenizer.special_tokens[t] for t in chat.special_tokens] == [50257, 50258, 50259, 50260]
    assert tokenizer.vocab_size == 50261 and add_special_tokens(tokenizer, chat.special_tokens) is tokenizer
    assert tokenizer.encode("Why is the sky blue?") == gpt2.encode("Why is the sky blue?")  # merges untouched
    (example,) = build_sft_data([qa()], chat, tokenizer, 100).examples
    trained = [i for i in example.labels if i != IGNORE_INDEX]
    assert tokenizer.decode(trained) == "Air scatters blue light most.<|end|><|endoftext|>"
    assert trained[-2:] == [50260, 50256]
    # a special token typed in a record is text, not the token: no record can forge a turn
    (forged,) = build_sft_data([qa("Hi<|assistant|>", "ok")], chat, tokenizer, 100).examples
    assert forged.input_ids.count(50259) == 1


def test_char_tokenizers_cannot_gain_special_tokens(char):
    with pytest.raises(InputError, match="a char tokenizer cannot gain the special tokens <|system|>"):
        add_special_tokens(char, get_template("chat").special_tokens)


def test_long_examples_are_truncated_and_counted_and_answerless_ones_dropped(char):
    template = get_template("qa")
    short, long = qa("Why?", "Yes."), qa("Why?", "A much longer answer than the other one.")
    too_long_prompt = qa("Why " * 20 + "?", "Yes.")
    prompt_length = len(char.encode(template.prompt(short)))
    data = build_sft_data([short, long, too_long_prompt], template, char, max_length=prompt_length + 10)
    assert (len(data.examples), data.truncated, data.dropped) == (2, 1, 1)
    assert data.lengths == [len(encode_example(char, template, e)[0]) for e in (short, long, too_long_prompt)]
    assert all(len(example) <= prompt_length + 10 for example in data.examples)
    assert data.examples[1].input_ids == encode_example(char, template, long)[0][: prompt_length + 10]
    # a prompt that fills max_length exactly leaves no answer token to predict: dropped too
    assert build_sft_data([short, long], template, char, max_length=prompt_length + 1).dropped == 0
    with pytest.raises(InputError, match=f"--max-length {prompt_length} is shorter than every prompt "
                                         f"\\(the shortest is {prompt_length} tokens\\)"):
        build_sft_data([short, long], template, char, max_length=prompt_length)


def test_collate_pads_to_the_longest_in_the_batch():
    a, b = TokenizedExample([5, 6, 7], [IGNORE_INDEX, 6, 7]), TokenizedExample([8, 9], [IGNORE_INDEX, 9])
    batch = collate([a, b], pad_id=0)
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 9, 0]]
    assert batch["labels"].tolist() == [[IGNORE_INDEX, 6, 7], [IGNORE_INDEX, 9, IGNORE_INDEX]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]
    assert collate([b])["input_ids"].shape == (1, 2)  # not a fixed length


def test_pack_joins_whole_examples_into_rows(char):
    examples = [TokenizedExample([i] * n, [IGNORE_INDEX] + [i] * (n - 1)) for i, n in ((1, 3), (2, 4), (3, 2), (4, 5))]
    rows = pack(examples, max_length=7)
    assert [row.input_ids for row in rows] == [[1, 1, 1, 2, 2, 2, 2], [3, 3, 4, 4, 4, 4, 4]]
    assert rows[0].labels == examples[0].labels + examples[1].labels  # each example keeps its labels
    with pytest.raises(InputError, match="does not fit a row of 4"):
        pack(examples, max_length=4)


# ----- new embedding rows ---------------------------------------------------------------------


@pytest.mark.parametrize("tie", [True, False])
def test_new_token_rows_are_the_mean_of_the_old_ones_and_are_saved(tmp_path, tie):
    torch.manual_seed(0)
    model = GPT(GPTConfig.preset("tiny", vocab_size=50, tie_weights=tie)).eval()
    ids = torch.randint(0, 50, (1, 8))
    before = model(ids).logits
    old_wte, old_head = model.transformer.wte.weight.clone(), model.lm_head.weight.clone()
    assert resize_token_embeddings(model, 53) == 3 and resize_token_embeddings(model, 40) == 0
    assert model.config.vocab_size == 53 and model.lm_head.weight.shape == (53, 64)
    assert torch.equal(model.transformer.wte.weight[50:], old_wte.mean(0).expand(3, -1))
    assert torch.equal(model.lm_head.weight[50:], old_head.mean(0).expand(3, -1))
    assert (model.lm_head.weight is model.transformer.wte.weight) == tie
    torch.testing.assert_close(model(ids).logits[..., :50], before, rtol=0, atol=0)  # old ids unchanged
    model.save_pretrained(tmp_path)
    loaded = GPT.from_pretrained(tmp_path)
    assert loaded.config.vocab_size == 53 and torch.equal(loaded.lm_head.weight, model.lm_head.weight)


def test_a_grown_tokenizer_saves_and_loads_its_special_tokens(gpt2, tmp_path):
    tokenizer = add_special_tokens(gpt2, get_template("chat").special_tokens)
    tokenizer.save(tmp_path)
    assert load_tokenizer(tmp_path).special_tokens == tokenizer.special_tokens


# ----- fromzero finetune prepare ---------------------------------------------------------------


@pytest.fixture
def model_dir(tmp_path, gpt2):
    """A tiny random fromzero GPT with GPT-2's tokenizer, saved as `fromzero train` saves one."""
    folder = tmp_path / "model"
    GPT(GPTConfig.preset("tiny", vocab_size=gpt2.vocab_size, block_size=256)).save_pretrained(folder)
    gpt2.save(folder)
    return folder


def test_prepare_prints_the_counts_of_education_qa(model_dir, capsys, monkeypatch):
    monkeypatch.setattr(console, "width", 400)
    assert main(["finetune", "prepare", "education_qa", "--model", str(model_dir), "--max-length", "128"]) == 0
    out = capsys.readouterr().out
    rows = {line.split("│")[1].strip(): [cell.strip() for cell in line.split("│")[2:4]]
            for line in out.splitlines() if line.count("│") == 4}
    splits = train_val_split(load_instructions("education_qa"), 0.1, seed=0)
    expected = [build_sft_data(part, get_template("qa"), load_tokenizer("gpt2"), 128) for part in splits]
    assert rows["examples read"] == ["457", "51"]  # 508 train records, 10% held out for validation
    assert rows["tokens min / mean / max"] == [
        f"{min(d.lengths)} / {statistics.mean(d.lengths):.0f} / {max(d.lengths)}" for d in expected
    ]
    assert rows["truncated to 128"] == [str(d.truncated) for d in expected] and expected[0].truncated > 0
    assert rows["dropped (answer cut away)"] == [str(d.dropped) for d in expected]
    assert rows["examples to train on"] == [str(len(d.examples)) for d in expected]
    assert "### Question:\nWhat is photosynthesis?\n\n### Answer:\nPhotosynthesis is" in out
    assert "template qa, tokenizer gpt2 (50,257 tokens)" in out


def test_prepare_shows_the_masked_part_dimmed(model_dir, tmp_path, capsys, monkeypatch):
    path = write_jsonl(tmp_path / "d.jsonl", [QA_RECORD] * 10)
    terminal = Console(file=io.StringIO(), force_terminal=True, color_system="standard", width=400, highlight=False)
    monkeypatch.setattr(finetune_command, "stdout", terminal)
    assert main(["finetune", "prepare", path, "--model", str(model_dir), "--template", "chat"]) == 0
    out = terminal.file.getvalue()
    dim, bold, reset = "\x1b[2m", "\x1b[1m", "\x1b[0m"  # rich closes the style at the end of each line
    prompt = ["<|system|>", "You are a helpful assistant.<|end|>", "<|user|>", "Why is the sky blue?<|end|>",
              "<|assistant|>"]
    answer = f"{bold}Air scatters blue light most.<|end|><|endoftext|>{reset}\n"
    shown = "".join(f"{dim}{line}{reset}\n" for line in prompt) + answer
    assert out.endswith("dimmed: no loss):\n" + shown)
    assert "gains 4 special tokens (<|system|>, <|user|>, <|assistant|>, <|end|>, ids 50257-50260)" in out


def test_prepare_accepts_a_hub_name_without_loading_weights(gpt2, tmp_path, capsys):
    path = write_jsonl(tmp_path / "d.jsonl", [QA_RECORD] * 10)
    assert main(["finetune", "prepare", path, "--model", "distilgpt2"]) == 0  # HF_HUB_OFFLINE: nothing is fetched
    assert "tokenizer gpt2" in capsys.readouterr().out


@pytest.mark.parametrize(
    "records, flags, message",
    [
        ([QA_RECORD, "{oops\n"], [], "line 2: not valid JSON"),
        ([QA_RECORD, {"instruction": "Why?", "subject": "x"}], [], "line 2: the record has no answer field"),
        ([{"messages": [{"role": "robot", "content": "x"}]}], [], "unknown role 'robot'"),
        ([], [], "is empty"),
        ([QA_RECORD] * 4, ["--template", "vicuna"], "unknown template 'vicuna'"),
        ([QA_RECORD] * 4, ["--max-length", "5"], "--max-length 5 is shorter than every prompt"),
        ([QA_RECORD] * 4, ["--max-length", "100000"], "longer than the model's context of 256 tokens"),
        ([QA_RECORD] * 4, ["--template-file", "TEMPLATE"], "has no {response} placeholder"),
    ],
)  # fmt: skip
def test_prepare_bad_inputs_exit_2_with_one_line(model_dir, tmp_path, capsys, records, flags, message):
    path = write_jsonl(tmp_path / "d.jsonl", records)
    (tmp_path / "template.txt").write_text("Q: {instruction}\nA:", encoding="utf-8")
    flags = [str(tmp_path / "template.txt") if flag == "TEMPLATE" else flag for flag in flags]
    assert main(["finetune", "prepare", path, "--model", str(model_dir), *flags]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], captured.err
    assert captured.out == ""


def test_prepare_with_an_unknown_model_folder_is_one_line(tmp_path, capsys):
    path = write_jsonl(tmp_path / "d.jsonl", [QA_RECORD] * 4)
    assert main(["finetune", "prepare", path, "--model", str(tmp_path / "absent")]) == 2
    assert "no model folder at" in capsys.readouterr().err


def test_finetune_help_imports_no_heavy_library():
    code = (
        "import sys\nfrom fromzero.cli import main\n"
        "try:\n    main(['finetune', 'prepare', '--help'])\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in ('torch', 'numpy', 'bs4', 'transformers') if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip().splitlines()[-1] == "[]", result.stdout[-500:]
