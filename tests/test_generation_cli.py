"""``fromzero generate`` on a small random model folder (weights + tokenizer), nothing downloaded."""

from __future__ import annotations

import pytest
import torch

transformers = pytest.importorskip("transformers")

from fromzero.cli import main  # noqa: E402
from fromzero.generation import GenerationConfig, generate  # noqa: E402
from fromzero.models import GPT  # noqa: E402
from fromzero.tokenizers import BPETokenizer  # noqa: E402

TEXT = "the cat sat on the mat. the dog sat on the log. a cat and a dog met on a mat. " * 4


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A folder like training writes: a random GPT-2 (context 64) plus its BPE tokenizer."""
    tokenizer = BPETokenizer.train(TEXT, vocab_size=300)
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=tokenizer.vocab_size, n_positions=64, n_embd=32, n_layer=2,
                                     n_head=2, initializer_range=0.5)
    directory = tmp_path_factory.mktemp("model")
    transformers.GPT2LMHeadModel(config).save_pretrained(directory)
    tokenizer.save(directory)
    return directory


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["generate", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_greedy_prints_prompt_and_the_library_continuation(model_dir, capsys):
    code, out, _ = run(capsys, "--model", str(model_dir), "--prompt", "the cat", "--greedy",
                       "--max-new-tokens", "12")
    assert code == 0
    tokenizer = BPETokenizer.load(model_dir)
    ids = tokenizer.encode("the cat")
    expected = generate(GPT.from_pretrained(model_dir), torch.tensor([ids]),
                        GenerationConfig(max_new_tokens=12, eos_token_id=tokenizer.eot_id,
                                         pad_token_id=tokenizer.eot_id))
    new = expected[0, len(ids):].tolist()
    if tokenizer.eot_id in new:
        new = new[:new.index(tokenizer.eot_id)]
    assert out == "the cat" + tokenizer.decode(new) + "\n"


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


def test_long_prompt_is_left_truncated_with_a_warning(model_dir, capsys):
    code, out, err = run(capsys, "--model", str(model_dir), "--prompt", TEXT, "--num-beams", "2",
                         "--max-new-tokens", "10")
    assert code == 0
    assert "warning" in err and "keeping its last 54" in err
    code, out, err = run(capsys, "--model", str(model_dir), "--prompt", TEXT, "--greedy",
                         "--max-new-tokens", "10")
    assert code == 0
    assert "warning" in err and "keeping its last 64" in err
    assert out.strip()


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
