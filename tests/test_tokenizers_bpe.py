"""Training our own BPE vocabulary, and exporting it to tiktoken and Hugging Face."""

from __future__ import annotations

import glob
import os
import sysconfig
from pathlib import Path

import pytest
import tiktoken
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tiktoken.load import load_tiktoken_bpe

from fromzero.data import load_text
from fromzero.errors import CorruptFileError, InputError, MissingFileError
from fromzero.tokenizers import BPETokenizer, CharTokenizer, Tokenizer, load_tokenizer, naive
from fromzero.tokenizers.patterns import GPT2_PATTERN, GPT4_PATTERN
from fromzero.tokenizers.train import train_bpe

UNICODE_SAMPLE = (
    "Größe naïve café — «quotes» 日本語 中文 한국어 👍🏽 👨‍👩‍👧 e\u0301 \r\n\r\n  tabs\t\there 1234567 it's I'M\n"
)


@pytest.fixture(scope="module")
def shakespeare(tinyshakespeare) -> str:
    return tinyshakespeare.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def trained(shakespeare) -> BPETokenizer:
    """A GPT-4-pattern vocabulary of 2,000 tokens from the first 300 kB of Shakespeare."""
    return BPETokenizer.train(shakespeare[:300_000] + UNICODE_SAMPLE, 2000, pattern="gpt4", name="shakes-2k")


@pytest.fixture(scope="module")
def python(trained) -> BPETokenizer:
    """The same vocabulary on the pure-Python encoder."""
    return BPETokenizer(trained.ranks, trained.pattern, trained.special_tokens, fast=False)


@pytest.fixture(scope="module")
def held_out(shakespeare) -> list[str]:
    """Text the vocabulary never saw: the rest of Shakespeare, Python sources, other scripts."""
    stdlib = sorted(glob.glob(os.path.join(sysconfig.get_paths()["stdlib"], "*.py")))[:15]
    return [shakespeare[300_000:], UNICODE_SAMPLE * 3, *(Path(p).read_text(encoding="utf-8") for p in stdlib)]


def learned_tokens(ranks: dict[bytes, int]) -> list[bytes]:
    """The bytes of every merged token, in id order."""
    return [token for token, rank in sorted(ranks.items(), key=lambda item: item[1])][256:]


def naive_tokens(merges: dict[tuple[int, int], int]) -> list[bytes]:
    """The same for ``naive.train``'s merges."""
    vocab = [bytes([b]) for b in range(256)]
    for (left, right), new_id in merges.items():
        if new_id == len(vocab):
            vocab.append(vocab[left] + vocab[right])
    return vocab[256:]


def test_incremental_training_equals_naive_recount(shakespeare):
    text = shakespeare[:20_000] + UNICODE_SAMPLE
    ranks, _ = train_bpe(text, 256 + 150, GPT4_PATTERN, [])
    assert learned_tokens(ranks) == naive_tokens(naive.train(text, 256 + 150, GPT4_PATTERN))


@pytest.mark.parametrize("pattern", [GPT2_PATTERN, GPT4_PATTERN], ids=["gpt2", "gpt4"])
def test_naive_reference_agrees_with_bpe_tokenizer_on_stories(pattern):
    """naive.py, the textbook version, learns the same vocabulary and gives the same ids as both encoders."""
    stories = load_text("stories")
    text, held_out = stories[:15_000] + UNICODE_SAMPLE, stories[15_000:80_000] + UNICODE_SAMPLE
    merges = naive.train(text, 256 + 150, pattern)
    tok = BPETokenizer.train(text, 256 + 150, pattern=pattern, special_tokens=())
    assert tok.vocab_size == 256 + 150 and learned_tokens(tok.ranks) == naive_tokens(merges)
    ids = tok.encode(held_out)
    assert tok.fast and naive.encode(held_out, merges, pattern) == ids
    tok.fast = False  # the readable encoder, on the same tokenizer
    assert not tok.fast and tok.encode(held_out) == ids
    assert naive.decode(ids, merges) == tok.decode(ids) == held_out


def test_training_is_deterministic_and_prefix_stable(shakespeare, trained):
    again = BPETokenizer.train(shakespeare[:300_000] + UNICODE_SAMPLE, 2000, pattern="gpt4")
    assert again.ranks == trained.ranks
    smaller = BPETokenizer.train(shakespeare[:300_000] + UNICODE_SAMPLE, 1000, pattern="gpt4")
    assert all(trained.ranks[token] == rank for token, rank in smaller.ranks.items())


def test_trained_vocabulary_layout(trained):
    assert trained.vocab_size == len(trained) == 2000
    assert trained.special_tokens == {"<|endoftext|>": 1999} and trained.eot_id == 1999
    assert all(trained.ranks[bytes([b])] == b for b in range(256))
    assert trained.token_bytes(trained.encode(" the")[0]) == b" the"


def test_special_tokens_are_not_learned():
    text = "<|endoftext|>".join(["abab"] * 50)
    tok = BPETokenizer.train(text, 300, special_tokens=["<|endoftext|>", "<|pad|>"])
    assert not any(b"<|" in token for token in tok.ranks)
    assert tok.encode("abab<|endoftext|>", allowed_special="all")[-1] == tok.eot_id


def test_training_stops_when_pairs_run_out():
    tok = BPETokenizer.train("abc abc", 1000)
    assert len(tok.ranks) < 300
    assert tok.special_tokens == {"<|endoftext|>": len(tok.ranks)}
    assert tok.encode("abc abc") == [tok.ranks[b"abc"], tok.ranks[b" abc"]]


@pytest.mark.parametrize("texts", ["", [], ["", ""], "<|endoftext|><|endoftext|>"])
def test_empty_corpus(texts):
    with pytest.raises(InputError, match="empty"):
        BPETokenizer.train(texts, 500)


def test_bad_training_settings():
    with pytest.raises(InputError, match="at least 256.*257"):
        BPETokenizer.train("some text", 256)
    with pytest.raises(InputError, match="258"):
        BPETokenizer.train("some text", 257, special_tokens=["<a>", "<b>"])
    with pytest.raises(InputError, match="valid regex"):
        BPETokenizer.train("some text", 300, pattern="([unclosed")


def test_fast_and_python_paths_agree(trained, python, held_out):
    assert trained.fast and not python.fast
    for text in held_out:
        ids = trained.encode(text)
        assert python.encode(text) == ids
        assert trained.decode(ids) == text


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=40))
def test_round_trip_trained(trained, python, text):
    ids = trained.encode(text, disallowed_special=())
    assert python.encode(text, disallowed_special=()) == ids
    assert trained.decode(ids) == text


def test_save_load_beside_model_files(trained, tmp_path):
    for name in ("config.json", "model.safetensors", "generation_config.json"):
        (tmp_path / name).write_text("{}")
    trained.save(tmp_path)
    assert {p.name for p in tmp_path.iterdir()} >= {"config.json", "model.safetensors", "generation_config.json"}
    assert (tmp_path / "config.json").read_text() == "{}"
    loaded = load_tokenizer(tmp_path)
    assert isinstance(loaded, BPETokenizer) and loaded.name == "shakes-2k"
    assert (loaded.ranks, loaded.pattern, loaded.special_tokens) == (trained.ranks, trained.pattern, trained.special_tokens)
    assert BPETokenizer.load(tmp_path).encode(UNICODE_SAMPLE) == trained.encode(UNICODE_SAMPLE)
    with pytest.raises(InputError, match="holds a 'bpe' tokenizer"):
        CharTokenizer.load(tmp_path)


def test_corrupt_saved_files(trained, tmp_path):
    trained.save(tmp_path)
    ranks_file = tmp_path / "fromzero_bpe_ranks.tiktoken"
    ranks_file.write_text(ranks_file.read_text().replace(" 7\n", " seven\n"))
    with pytest.raises(CorruptFileError, match="line 8"):
        load_tokenizer(tmp_path)
    ranks_file.unlink()
    with pytest.raises(MissingFileError, match="fromzero_bpe_ranks.tiktoken"):
        load_tokenizer(tmp_path)
    (tmp_path / "fromzero_tokenizer.json").write_text('{"kind": "sentencepiece"}')
    with pytest.raises(CorruptFileError, match="unknown tokenizer kind"):
        Tokenizer.load(tmp_path)
    (tmp_path / "fromzero_tokenizer.json").write_text('{"kind": "bpe"}')
    with pytest.raises(CorruptFileError, match="incomplete"):
        Tokenizer.load(tmp_path)
    (tmp_path / "fromzero_tokenizer.json").write_text("{oops")
    with pytest.raises(CorruptFileError, match="not valid JSON"):
        Tokenizer.load(tmp_path)


def test_bad_vocabularies():
    with pytest.raises(InputError, match="256 single bytes"):
        BPETokenizer({b"a": 0})
    ranks = {bytes([b]): b for b in range(256)}
    with pytest.raises(InputError, match="unique"):
        BPETokenizer(ranks, special_tokens={"<|endoftext|>": 3})
    with pytest.raises(InputError, match="no gaps"):
        BPETokenizer(ranks, special_tokens={"<|endoftext|>": 300})


def test_export_tiktoken(trained, python, held_out, tmp_path):
    trained.export_tiktoken(tmp_path / "shakes.tiktoken")
    enc = tiktoken.Encoding("shakes", pat_str=GPT4_PATTERN, mergeable_ranks=load_tiktoken_bpe(str(tmp_path / "shakes.tiktoken")),
                            special_tokens=trained.special_tokens)
    for text in held_out:
        assert enc.encode(text, allowed_special="all") == python.encode(text, allowed_special="all")


def test_export_hf_gives_identical_ids(trained, python, held_out, tmp_path):
    tokenizers = pytest.importorskip("tokenizers")
    transformers = pytest.importorskip("transformers")
    trained.export_hf(tmp_path)
    path = str(tmp_path / "tokenizer.json")
    hf = tokenizers.Tokenizer.from_file(path)
    fast = transformers.PreTrainedTokenizerFast(tokenizer_file=path)
    for text in [*held_out, "end<|endoftext|>start"]:
        expected = python.encode(text, allowed_special="all")
        assert hf.encode(text).ids == expected
        assert fast.encode(text) == expected
        assert hf.decode(expected, skip_special_tokens=False) == text
    back = BPETokenizer.from_hf(path)
    assert (back.ranks, back.pattern, back.special_tokens) == (trained.ranks, trained.pattern, trained.special_tokens)
    auto = transformers.AutoTokenizer.from_pretrained(tmp_path)
    assert auto.eos_token_id == trained.eot_id
    for text in held_out[:3]:
        assert auto.encode(text) == python.encode(text)
        assert auto.decode(python.encode(text)) == text


def test_export_hf_of_gpt2_reproduces_its_merges(gpt2_files, tmp_path):
    import json

    BPETokenizer.from_files(gpt2_files["encoder.json"], gpt2_files["vocab.bpe"]).export_hf(tmp_path / "gpt2.json")
    merges = [" ".join(pair) for pair in json.loads((tmp_path / "gpt2.json").read_text())["model"]["merges"]]
    original = gpt2_files["vocab.bpe"].read_text(encoding="utf-8").splitlines()[1:]
    assert merges == [line for line in original if line]
