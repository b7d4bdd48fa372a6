"""Character and word tokenizers, ``load_tokenizer`` and the ``fromzero tokenizer`` command."""

from __future__ import annotations

import io
import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console

from fromzero.cli import main
from fromzero.commands import tokenizer as tokenizer_command
from fromzero.errors import InputError, MissingFileError
from fromzero.tokenizers import BPETokenizer, CharTokenizer, WordTokenizer, load_tokenizer

CORPUS = "To be, or not to be: that is the question.\nWhether 'tis nobler in the mind to suffer\n"


# ----- CharTokenizer ----------------------------------------------------------------------------
def test_char_vocabulary_is_sorted_and_deterministic():
    tok = CharTokenizer.train(CORPUS)
    assert tok.chars == sorted(set(CORPUS))
    assert CharTokenizer.train([CORPUS[40:], CORPUS[:40]]).chars == tok.chars
    assert tok.encode("be") == [tok.chars.index("b"), tok.chars.index("e")]
    assert tok.special_tokens == {} and tok.eot_id is None and tok.pad_id is None


def test_char_special_tokens_and_unknown_policy():
    tok = CharTokenizer.train(CORPUS, pad=True, unk=True)
    assert (tok.pad_id, tok.unk_id) == (0, 1)
    assert tok.vocab_size == len(tok) == len(set(CORPUS)) + 2
    assert tok.encode("be!")[-1] == 1
    assert tok.decode(tok.encode("be!")) == "be[UNK]"
    assert tok.decode([0, *tok.encode("be")], skip_special_tokens=True) == "be"
    strict = CharTokenizer.train(CORPUS)
    with pytest.raises(InputError, match=r"'!' \(U\+0021\).*fromzero tokenizer train --kind char --unk"):
        strict.encode("be!")


@settings(max_examples=300, deadline=None)
@given(text=st.text(alphabet=sorted(set(CORPUS)), max_size=60))
def test_char_round_trip(text):
    tok = CharTokenizer.train(CORPUS, pad=True)
    assert tok.decode(tok.encode(text)) == text


@settings(max_examples=300, deadline=None)
@given(text=st.text(min_size=1, max_size=60))
def test_char_round_trip_on_its_own_corpus(text):
    tok = CharTokenizer.train(text)
    assert tok.decode(tok.encode(text)) == text


def test_char_bad_input():
    with pytest.raises(InputError, match="empty"):
        CharTokenizer.train("")
    with pytest.raises(InputError, match="distinct single characters"):
        CharTokenizer(["a", "a"])
    with pytest.raises(InputError, match="not in this vocabulary"):
        CharTokenizer.train("ab").decode([5])


# ----- WordTokenizer ----------------------------------------------------------------------------
def test_word_vocabulary_order_and_specials():
    tok = WordTokenizer.train("b a b c a b. A", lowercase=False)
    assert tok.special_tokens == {"[PAD]": 0, "[UNK]": 1} and (tok.pad_id, tok.unk_id) == (0, 1)
    assert tok.words == ["b", "a", ".", "A", "c"]  # by frequency, then alphabetical
    assert tok.encode("a b zebra") == [3, 2, 1]
    assert tok.eot_id is None


def test_word_options():
    assert WordTokenizer.train("Dog dog DOG cat", lowercase=True).words == ["dog", "cat"]
    assert WordTokenizer.train("a a a b b c", min_freq=2).words == ["a", "b"]
    assert WordTokenizer.train("a a a b b c", max_size=3).vocab_size == 3
    tok = WordTokenizer.train("Don't stop, now!")
    assert tok.tokenize("Don't stop, now!") == ["Don", "'", "t", "stop", ",", "now", "!"]
    assert tok.decode(tok.encode("Don't stop, now!")) == "Don ' t stop , now !"
    assert tok.decode([0, 1, *tok.encode("now")], skip_special_tokens=True) == "now"


def test_word_bad_input():
    with pytest.raises(InputError, match="empty"):
        WordTokenizer.train("   \n ")
    with pytest.raises(InputError, match="minimum word frequency"):
        WordTokenizer.train("a b", min_freq=0)
    with pytest.raises(InputError, match="PAD"):
        WordTokenizer(["[PAD]", "a"])


# ----- saving and loading -----------------------------------------------------------------------
@pytest.mark.parametrize(
    "tok",
    [CharTokenizer.train(CORPUS, pad=True, unk=True, name="shakes-chars"), WordTokenizer.train(CORPUS, lowercase=True),
     BPETokenizer.train(CORPUS * 3, 300, name="tiny-bpe")],
    ids=["char", "word", "bpe"],
)
def test_save_and_load_any_kind(tok, tmp_path):
    tok.save(tmp_path)
    config = json.loads((tmp_path / "fromzero_tokenizer.json").read_text())
    assert (config["kind"], config["name"], config["vocab_size"]) == (tok.kind, tok.name, tok.vocab_size)
    loaded = load_tokenizer(tmp_path)
    assert type(loaded) is type(tok) and loaded.name == tok.name
    assert loaded.encode(CORPUS) == tok.encode(CORPUS)
    assert loaded.special_tokens == tok.special_tokens and loaded.eot_id == tok.eot_id


def test_load_tokenizer_errors(tmp_path):
    with pytest.raises(InputError, match="fromzero tokenizer train --kind char"):
        load_tokenizer("char")
    with pytest.raises(MissingFileError, match="no tokenizer at"):
        load_tokenizer(tmp_path / "absent")
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(MissingFileError, match="holds no tokenizer"):
        load_tokenizer(tmp_path)


# ----- the command line -------------------------------------------------------------------------
def test_cli_train_encode_decode_show_export(tmp_path, capsys):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(CORPUS * 20, encoding="utf-8")
    out = tmp_path / "tok"
    assert main(["tokenizer", "train", "--input", str(corpus), "--vocab-size", "300", "--out", str(out),
                 "--pattern", "gpt4", "--hf"]) == 0
    assert (out / "tokenizer.json").is_file() and (out / "tokenizer_config.json").is_file()
    tok = load_tokenizer(out)
    assert tok.name == "tok" and tok.vocab_size == 300
    capsys.readouterr()

    assert main(["tokenizer", "encode", "--tokenizer", str(out), "--text", "to be<|endoftext|>", "--allow-special"]) == 0
    ids = json.loads(capsys.readouterr().out)
    assert ids == tok.encode("to be<|endoftext|>", allowed_special="all") and ids[-1] == tok.eot_id

    assert main(["tokenizer", "decode", "--tokenizer", str(out), "--ids", json.dumps(ids)]) == 0
    assert capsys.readouterr().out == "to be<|endoftext|>\n"

    assert main(["tokenizer", "show", "--tokenizer", str(out), "--text", "to be 👍"]) == 0
    shown = capsys.readouterr().out
    assert shown.splitlines()[0].replace("|", "") == "to be 👍" and f"{len(tok.encode('to be 👍'))} tokens" in shown

    assert main(["tokenizer", "export", "--tokenizer", str(out), "--format", "tiktoken", "--out", str(tmp_path / "t.tiktoken")]) == 0
    assert BPETokenizer.from_tiktoken(tmp_path / "t.tiktoken", pattern="gpt4").ranks == tok.ranks


def test_cli_char_and_word(tmp_path, capsys):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(CORPUS, encoding="utf-8")
    assert main(["tokenizer", "train", "--kind", "char", "--unk", "--input", str(corpus), "--out", str(tmp_path / "c")]) == 0
    assert main(["tokenizer", "train", "--kind", "word", "--input", str(corpus), "--out", str(tmp_path / "w")]) == 0
    capsys.readouterr()
    assert main(["tokenizer", "encode", "--tokenizer", str(tmp_path / "c"), "--text", "be"]) == 0
    assert json.loads(capsys.readouterr().out) == load_tokenizer(tmp_path / "c").encode("be")


@pytest.mark.parametrize(
    "argv, message",
    [
        (["tokenizer", "decode", "--tokenizer", "{tok}", "--ids", "[1, 2"], "JSON list"),
        (["tokenizer", "decode", "--tokenizer", "{tok}", "--ids", "[999999]"], "not in this vocabulary"),
        (["tokenizer", "encode", "--tokenizer", "{tok}", "--text", "a<|endoftext|>"], "special token"),
        (["tokenizer", "encode", "--tokenizer", "{tmp}/absent", "--text", "a"], "no tokenizer at"),
        (["tokenizer", "train", "--input", "{tmp}/absent.txt", "--vocab-size", "300", "--out", "{tmp}/o"], "does not exist"),
        (["tokenizer", "train", "--input", "{tmp}/corpus.txt", "--out", "{tmp}/o"], "--vocab-size is required"),
        (["tokenizer", "train", "--input", "{tmp}/corpus.txt", "--vocab-size", "100", "--out", "{tmp}/o"], "at least 256"),
    ],
)
def test_cli_errors_are_one_line(argv, message, tmp_path, capsys):
    (tmp_path / "corpus.txt").write_text(CORPUS, encoding="utf-8")
    BPETokenizer.train(CORPUS, 300).save(tmp_path / "tok")
    argv = [a.format(tok=tmp_path / "tok", tmp=tmp_path) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_cli_train_refuses_a_file_as_out(tmp_path, capsys):
    (tmp_path / "corpus.txt").write_text(CORPUS, encoding="utf-8")
    existing = tmp_path / "notes.txt"
    existing.write_text("keep me", encoding="utf-8")
    assert main(["tokenizer", "train", "--input", str(tmp_path / "corpus.txt"), "--vocab-size", "300", "--out", str(existing)]) == 2
    err = capsys.readouterr().err
    assert "--out" in err and "is a file" in err and len(err.strip().splitlines()) == 1
    assert existing.read_text(encoding="utf-8") == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus.txt", "notes.txt"]


def test_cli_export_creates_the_hf_folder_and_writes_tiktoken_into_a_folder(tmp_path, capsys):
    tok = BPETokenizer.train(CORPUS * 3, 300, name="tiny")
    tok.save(tmp_path / "tok")
    assert main(["tokenizer", "export", "--tokenizer", str(tmp_path / "tok"), "--format", "hf", "--out", str(tmp_path / "tok-hf")]) == 0
    assert sorted(p.name for p in (tmp_path / "tok-hf").iterdir()) == ["tokenizer.json", "tokenizer_config.json"]
    assert BPETokenizer.from_hf(tmp_path / "tok-hf" / "tokenizer.json").ranks == tok.ranks
    assert main(["tokenizer", "export", "--tokenizer", str(tmp_path / "tok"), "--format", "hf", "--out", str(tmp_path / "one.json")]) == 0
    assert (tmp_path / "one.json").is_file()
    (tmp_path / "exports").mkdir()
    assert main(["tokenizer", "export", "--tokenizer", str(tmp_path / "tok"), "--format", "tiktoken", "--out", str(tmp_path / "exports")]) == 0
    assert BPETokenizer.from_tiktoken(tmp_path / "exports" / "tiny.tiktoken").ranks == tok.ranks
    (tmp_path / "a-file").write_text("x", encoding="utf-8")
    capsys.readouterr()
    assert main(["tokenizer", "export", "--tokenizer", str(tmp_path / "tok"), "--format", "hf", "--out", str(tmp_path / "a-file")]) == 2
    assert "is a file" in capsys.readouterr().err and (tmp_path / "a-file").read_text(encoding="utf-8") == "x"


def _show(tmp_path, monkeypatch, console: Console, text: str) -> tuple[BPETokenizer, str]:
    """Run ``tokenizer show`` on a tiny BPE with ``console`` as stdout; return the tokenizer and the output."""
    tok = BPETokenizer.train(CORPUS * 3, 300)
    tok.save(tmp_path / "tok")
    monkeypatch.setattr(tokenizer_command, "stdout", console)
    assert main(["tokenizer", "show", "--tokenizer", str(tmp_path / "tok"), "--text", text]) == 0
    return tok, console.file.getvalue()


@pytest.mark.parametrize("color_system", ["standard", "256", "truecolor"])
def test_cli_show_gives_neighbouring_tokens_different_colours(color_system, tmp_path, monkeypatch):
    console = Console(file=io.StringIO(), force_terminal=True, color_system=color_system, width=200)
    tok, out = _show(tmp_path, monkeypatch, console, "to be, or not to be: that")
    n_tokens = len(tok.encode("to be, or not to be: that"))
    first_line = out.splitlines()[0]
    styles = [code for code, text in re.findall(r"\x1b\[([0-9;]+)m([^\x1b]+)", first_line)]
    assert len(styles) == n_tokens > 4  # one coloured run per token: equal neighbours would merge
    assert all(a != b for a, b in zip(styles, styles[1:]))


@pytest.mark.parametrize("no_color", [False, True], ids=["piped", "NO_COLOR"])
def test_cli_show_marks_boundaries_without_colour(no_color, tmp_path, monkeypatch):
    console = Console(file=io.StringIO(), force_terminal=no_color, no_color=no_color, width=200)
    tok, out = _show(tmp_path, monkeypatch, console, "to be, or not")
    assert out.splitlines()[0] == "|".join(tok.decode([i]) for i in tok.encode("to be, or not"))


@pytest.mark.parametrize(
    "argv, flag, python_name",
    [
        (["tokenizer", "encode", "--tokenizer", "{tmp}/chars", "--text", "be!"], "--kind char --unk", "unk=True"),
        (["tokenizer", "encode", "--tokenizer", "{tmp}/bpe", "--text", "a<|endoftext|>"], "--allow-special", "allowed_special"),
        (["tokenizer", "train", "--kind", "word", "--min-freq", "0", "--input", "{tmp}/corpus.txt", "--out", "{tmp}/w"],
         "minimum word frequency", "min_freq"),
        (["tokenizer", "train", "--input", "{tmp}/corpus.txt", "--vocab-size", "100", "--out", "{tmp}/o"],
         "vocabulary size", "vocab_size"),
        (["tokenizer", "encode", "--tokenizer", "char", "--text", "a"], "fromzero tokenizer train --kind char", "CharTokenizer"),
        (["tokenizer", "encode", "--tokenizer", "{tmp}/absent", "--text", "a"], "fromzero tokenizer train", "tok.save"),
    ],
)
def test_cli_errors_name_flags_not_python_arguments(argv, flag, python_name, tmp_path, capsys):
    (tmp_path / "corpus.txt").write_text(CORPUS, encoding="utf-8")
    CharTokenizer.train("abe").save(tmp_path / "chars")
    BPETokenizer.train(CORPUS, 300).save(tmp_path / "bpe")
    assert main([a.format(tmp=tmp_path) for a in argv]) == 2
    err = capsys.readouterr().err
    assert flag in err and python_name not in err
