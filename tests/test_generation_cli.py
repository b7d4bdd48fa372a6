"""``fromzero generate`` on small random model folders (weights + tokenizer), nothing downloaded."""

from __future__ import annotations

import shlex
import shutil

import pytest
import torch

from fromzero.cli import main
from fromzero.data.loading import DOCUMENT_SEPARATOR, load_documents
from fromzero.generation import GenerationConfig, generate
from fromzero.models import GPT, GPTConfig
from fromzero.tokenizers import BPETokenizer, CharTokenizer, load_tokenizer

TEXT = "the cat sat on the mat. the dog sat on the log. a cat and a dog met on a mat. " * 4


def save_random_model(directory, tokenizer) -> None:
    """A folder like training writes: a random GPT (context 64, large weights so the text varies)
    plus its tokenizer."""
    torch.manual_seed(0)
    config = GPTConfig(vocab_size=tokenizer.vocab_size, block_size=64, n_embd=32, n_layer=2, n_head=2,
                       initializer_range=0.5)
    GPT(config).save_pretrained(directory)
    tokenizer.save(directory)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A BPE model, like GPT-2 and the models trained with --tokenizer bpe."""
    directory = tmp_path_factory.mktemp("model")
    save_random_model(directory, BPETokenizer.train(TEXT, vocab_size=300))
    return directory


@pytest.fixture(scope="module")
def char_model_dir(tmp_path_factory):
    """A character model of the bundled stories, like the course's mini GPT: its vocabulary has no
    <|endoftext|>."""
    directory = tmp_path_factory.mktemp("char_model")
    save_random_model(directory, CharTokenizer.from_text([*load_documents("stories"), DOCUMENT_SEPARATOR]))
    return directory


def continuation(directory, ids: list[int], max_new_tokens: int) -> str:
    """What the library's greedy decoding writes after ``ids``, as the command prints it."""
    tokenizer = load_tokenizer(directory)
    eos = tokenizer.eot_id
    out = generate(GPT.from_pretrained(directory), torch.tensor([ids]),
                   GenerationConfig(max_new_tokens=max_new_tokens, eos_token_id=eos, pad_token_id=eos))
    new = out[0, len(ids):].tolist()
    if eos in new:
        new = new[:new.index(eos)]
    return tokenizer.decode(new)


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["generate", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_greedy_prints_prompt_and_the_library_continuation(model_dir, capsys):
    code, out, _ = run(capsys, "--model", str(model_dir), "--prompt", "the cat", "--greedy",
                       "--max-new-tokens", "12")
    assert code == 0
    ids = BPETokenizer.load(model_dir).encode("the cat")
    assert out == "the cat" + continuation(model_dir, ids, 12) + "\n"


@pytest.mark.parametrize("prompt", [[], ["--prompt", ""]])
def test_no_prompt_starts_a_new_document_without_printing_its_start(model_dir, char_model_dir, capsys, prompt):
    """BPE models start after <|endoftext|>, the character model after the blank lines between
    documents it was trained on; neither start is printed."""
    for directory in (model_dir, char_model_dir):
        tokenizer = load_tokenizer(directory)
        start = [tokenizer.eot_id] if tokenizer.eot_id is not None else tokenizer.encode(DOCUMENT_SEPARATOR)
        for extra in ([], ["--stream"]):
            code, out, _ = run(capsys, "--model", str(directory), *prompt, "--greedy", "--max-new-tokens", "20",
                               *extra)
            assert code == 0
            assert out == continuation(directory, start, 20) + "\n"
            assert "<|endoftext|>" not in out


def test_help_examples_run(char_model_dir, tmp_path, monkeypatch, capsys):
    """Every example of ``generate --help`` that uses a local model runs as printed (with the
    folder ``fromzero train`` writes by default); the others name hub models, downloaded when online."""
    monkeypatch.chdir(tmp_path)
    shutil.copytree(char_model_dir, tmp_path / "out" / "mini-stories")
    with pytest.raises(SystemExit):
        main(["generate", "--help"])
    help_text = capsys.readouterr().out
    examples = [shlex.split(line.strip()) for line in help_text.split("Examples:")[1].splitlines()
                if line.strip().startswith("fromzero generate")]
    local = [argv[1:] for argv in examples if argv[argv.index("--model") + 1] == "out/mini-stories"]
    assert local and all(argv[argv.index("--model") + 1] in ("out/mini-stories", "gpt2", "distilgpt2")
                         for argv in examples)
    for argv in local:
        assert main([*argv, "--max-new-tokens", "5"]) == 0, argv
    assert "fromzero generate --model out/mini-stories\n" in help_text  # what `fromzero train` suggests
    assert "draws a fresh seed and prints it; pass --seed to repeat" in help_text


def test_stream_prints_the_same_text(model_dir, capsys):
    common = ["--model", str(model_dir), "--prompt", "a dog", "--max-new-tokens", "15", "--seed", "3"]
    _, plain, _ = run(capsys, *common)
    _, streamed, _ = run(capsys, *common, "--stream")
    assert streamed == plain


def test_sampling_prints_its_seed_and_repeats_with_it(model_dir, capsys):
    common = ["--model", str(model_dir), "--prompt", "the", "--max-new-tokens", "15", "--temperature", "1.5"]
    code, first, err = run(capsys, *common)
    assert code == 0 and "--seed" in err
    seed = err.split("--seed ")[1].split(" ")[0]
    _, again, _ = run(capsys, *common, "--seed", seed)
    assert again == first


def test_beams_and_several_sequences(model_dir, capsys):
    code, out, _ = run(capsys, "--model", str(model_dir), "--prompt", "the dog", "--num-beams", "3",
                       "--num-return-sequences", "2", "--max-new-tokens", "8")
    assert code == 0
    assert out.count("--- ") == 2 and out.count("the dog") >= 2


def test_device_choice(model_dir, capsys):
    code, out, _ = run(capsys, "--model", str(model_dir), "--prompt", "the cat", "--greedy",
                       "--max-new-tokens", "4", "--device", "cpu")
    assert code == 0 and out.startswith("the cat")
    for device, words in (("tpu", "unknown --device 'tpu'"), ("cuda:3", "no CUDA GPU")):
        if device.startswith("cuda") and torch.cuda.is_available():
            continue
        code, _, err = run(capsys, "--model", str(model_dir), "--prompt", "x", "--device", device)
        assert code == 2 and words in err and err.count("\n") == 1


@pytest.mark.parametrize("weights", ["bf16", "int8"])
def test_lighter_weights_run(model_dir, capsys, weights):
    code, out, _ = run(capsys, "--model", str(model_dir), "--prompt", "the cat", "--greedy",
                       "--max-new-tokens", "6", "--weights", weights)
    assert code == 0 and out.startswith("the cat")


def test_long_prompt_is_left_truncated_with_a_warning_and_printed_whole(model_dir, capsys):
    ids = BPETokenizer.load(model_dir).encode(TEXT)
    code, out, err = run(capsys, "--model", str(model_dir), "--prompt", TEXT, "--num-beams", "2",
                         "--max-new-tokens", "10")
    assert code == 0
    assert "warning" in err and "keeping its last 54" in err
    assert out.startswith(TEXT) and len(out) > len(TEXT) + 1
    for extra in ([], ["--stream"]):
        code, out, err = run(capsys, "--model", str(model_dir), "--prompt", TEXT, "--greedy",
                             "--max-new-tokens", "10", *extra)
        assert code == 0
        assert "warning" in err and "keeping its last 64" in err
        assert out == TEXT + continuation(model_dir, ids[-64:], 10) + "\n"


@pytest.mark.parametrize("args,message", [
    (["--model", "no/such/dir", "--prompt", "x"], "no model directory"),
    (["--model", "gpt2", "--prompt", "x"], "HF_HUB_OFFLINE"),
    (["--prompt", "x", "--top-p", "0"], "top_p"),
    (["--prompt", "x", "--max-new-tokens", "64", "--num-beams", "2"], "no room"),
    (["--prompt", "x", "--num-beams", "2", "--max-new-tokens", "10", "--stream"], "one sequence"),
    (["--prompt", "x", "--temperature", "-1"], "temperature"),
])
def test_user_errors_are_one_line_exit_2(model_dir, capsys, args, message):
    if args[0] != "--model":
        args = ["--model", str(model_dir), *args]
    code, out, err = run(capsys, *args)
    assert code == 2
    assert message in err and "Traceback" not in err
    assert out == ""  # nothing printed before the error, not even the prompt


@pytest.mark.parametrize("args,flags", [
    (["--stream", "--num-beams", "4"], ["--num-beams"]),
    (["--stream", "--num-return-sequences", "2"], ["--num-return-sequences"]),
    (["--greedy", "--num-return-sequences", "2"], ["--num-return-sequences", "--greedy"]),
    (["--num-beams", "2", "--num-return-sequences", "3"], ["--num-return-sequences", "--num-beams"]),
    (["--stop", ""], ["--stop"]),
])
def test_errors_name_the_flags_not_python_arguments(model_dir, capsys, args, flags):
    code, out, err = run(capsys, "--model", str(model_dir), "--prompt", "Once", *args)
    assert code == 2 and out == ""
    assert all(flag in err for flag in flags), err
    assert "=1" not in err and "=True" not in err
