"""GPT-2 exactness: our BPE with GPT-2's files gives tiktoken's ids, on both encoders.

The reference is tiktoken's own ``get_encoding("gpt2")`` recipe (its pattern, its file reader),
fed the official files through tiktoken's cache, so nothing of ours is shared with it.
"""

from __future__ import annotations

import glob
import hashlib
import io
import os
import shutil
import sysconfig
import urllib.error
from pathlib import Path

import pytest
import tiktoken
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fromzero.errors import CorruptFileError, InputError, MissingFileError, OfflineError
from fromzero.tokenizers import BPETokenizer, load_tokenizer
from fromzero.tokenizers import gpt2 as gpt2_module

HARD_CASES = [
    "Hello prasad how are you doing?",
    "日本語のテキストと中文文本，还有한국어 텍스트。",
    "family: 👨‍👩‍👧‍👦, flags 🇫🇷🇯🇵, skin 👍🏽, keycap 1️⃣, 😀‍👍",
    "combining: e\u0301 a\u0308 n\u0303 \u0915\u094d\u0937 Zalgo: Z\u0351\u0352\u0353a\u0354\u0355l\u0356g\u0357o",
    "windows\r\nline\r\n\r\nendings\r\r\n",
    "runs of spaces:  two   three    four\t\ttabs \u00a0nbsp\u3000ideographic          ",
    "\n\n\n\nnewlines\n \n  \n   \n",
    "contractions: I'm you're he's we've they'll she'd don't CAN'T I'M Y'ALL 'tis o'clock",
    "digits: 0 12 345 6789 1234567890 3.14159 1e-10 0x1F ١٢٣ ½ ²",
    "punctuation!!! ??? ... --- ((( ))) {{ }} <<>> @@ ## $$ %% ^^ && ** ~~ ``` '''",
    "mixed scripts: Ελληνικά Кириллица עברית العربية हिन्दी ไทย",
    "trailing spaces at the end   ",
    " leading space and\u200bzero width\u200d joiners\ufeff",
    "a" * 300 + " " + "ab" * 200 + "\n" * 50 + " " * 120,
    "x",
    "",
]


@pytest.fixture(scope="session")
def reference(gpt2_files, tmp_path_factory):
    """tiktoken's stock ``get_encoding("gpt2")``, fed the official files through its cache."""
    cache = tmp_path_factory.mktemp("tiktoken_cache")
    base = "https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/"
    for name in ("encoder.json", "vocab.bpe"):
        shutil.copy(gpt2_files[name], cache / hashlib.sha1((base + name).encode()).hexdigest())
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TIKTOKEN_CACHE_DIR", str(cache))
        from tiktoken_ext.openai_public import gpt2

        recipe = gpt2()  # reads the cached files with tiktoken's own loader, checking their sha256
    return tiktoken.Encoding(**recipe)


@pytest.fixture(scope="session")
def fast(gpt2_files):
    return BPETokenizer.from_files(gpt2_files["encoder.json"], gpt2_files["vocab.bpe"], fast=True)


@pytest.fixture(scope="session")
def python(gpt2_files):
    return BPETokenizer.from_files(gpt2_files["encoder.json"], gpt2_files["vocab.bpe"], fast=False)


@pytest.fixture(scope="session")
def varied_documents(tinyshakespeare) -> list[str]:
    """More than 1 MB of real text: Shakespeare, Python sources, licence texts, hard cases."""
    stdlib = sorted(glob.glob(os.path.join(sysconfig.get_paths()["stdlib"], "*.py")))
    licences = sorted(p for p in glob.glob("/usr/share/common-licenses/*") if os.path.isfile(p))
    documents = [tinyshakespeare.read_text(encoding="utf-8")]
    documents += [Path(p).read_text(encoding="utf-8", errors="replace") for p in stdlib[:60] + licences]
    documents += HARD_CASES
    assert sum(len(d.encode("utf-8")) for d in documents) > 1_500_000
    return documents


def test_known_ids(fast, python):
    for tok in (fast, python):
        assert tok.encode("Hello, how are you?") == [15496, 11, 703, 389, 345, 30]
        assert tok.encode("Hello prasad how are you doing?") == [15496, 778, 292, 324, 703, 389, 345, 1804, 30]
        assert tok.vocab_size == len(tok) == 50257 and tok.eot_id == 50256


@pytest.mark.parametrize("path", ["fast", "python"])
def test_matches_tiktoken_on_megabytes(path, fast, python, reference, varied_documents):
    tok = fast if path == "fast" else python
    assert tok.fast == (path == "fast")
    for document in varied_documents:
        expected = reference.encode(document, disallowed_special=())
        assert tok.encode(document, disallowed_special=()) == expected, document[:80]
        assert tok.decode(expected) == document


@pytest.mark.parametrize("path", ["fast", "python"])
def test_special_tokens_like_tiktoken(path, fast, python, reference):
    tok = fast if path == "fast" else python
    text = "end of one<|endoftext|>start of two <|endoftext|>"
    assert tok.encode(text, allowed_special="all") == reference.encode(text, allowed_special="all")
    assert tok.encode(text, allowed_special={"<|endoftext|>"}).count(50256) == 2
    assert tok.encode(text, disallowed_special=()) == reference.encode(text, disallowed_special=())
    assert 50256 not in tok.encode(text, disallowed_special=())
    with pytest.raises(InputError, match="special token '<\\|endoftext\\|>'"):
        tok.encode(text)
    with pytest.raises(InputError, match="unknown special token"):
        tok.encode(text, allowed_special={"<|im_start|>"})


def test_lone_surrogates_become_replacement_chars(fast, python, reference):
    text = "a\ud800b\udfff"
    assert fast.encode(text) == python.encode(text) == reference.encode(text)


def test_decode_replaces_partial_characters(fast, reference):
    ids = fast.encode("😀 ok")
    partial = ids[:1] + ids[2:]  # drop one byte-token of the emoji
    assert fast.decode(partial) == reference.decode(partial)
    assert "\ufffd" in fast.decode(partial)
    with pytest.raises(InputError, match="invalid UTF-8"):
        fast.decode(partial, errors="strict")
    with pytest.raises(InputError, match="not in this vocabulary"):
        fast.decode([50257])
    with pytest.raises(InputError, match="integers"):
        fast.decode(["a"])


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=40))
def test_round_trip_and_paths_agree(fast, python, text):
    ids = fast.encode(text, disallowed_special=())
    assert python.encode(text, disallowed_special=()) == ids
    assert fast.decode(ids) == text


# ----- GPT-2's files: cache, download, checks ---------------------------------------------------
def _cache(gpt2_files, *names) -> Path:
    folder = gpt2_module.gpt2_dir()
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).symlink_to(gpt2_files[name])
    return folder


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise urllib.error.URLError("network is unreachable")

    monkeypatch.setattr(gpt2_module.urllib.request, "urlopen", refuse)


@pytest.mark.parametrize("names", [("encoder.json", "vocab.bpe"), ("gpt2.tiktoken",)])
def test_gpt2_reads_either_format_from_cache(gpt2_files, names, no_network):
    _cache(gpt2_files, *names)
    tok = BPETokenizer.gpt2()
    assert tok.name == "gpt2" and tok.vocab_size == 50257 and tok.eot_id == 50256
    assert tok.encode("Hello, how are you?") == [15496, 11, 703, 389, 345, 30]
    assert load_tokenizer("gpt2").ranks == tok.ranks


def test_gpt2_offline_error_names_files_and_folder(no_network):
    with pytest.raises(OfflineError, match=r"encoder\.json.*vocab\.bpe.*gpt2\.tiktoken.*gpt2/"):
        BPETokenizer.gpt2()
    with pytest.raises(OfflineError, match="not cached"):
        BPETokenizer.gpt2(download=False)


def test_gpt2_download_checks_sha256(gpt2_files, monkeypatch):
    served = {gpt2_module.ENCODER_JSON.url: gpt2_files["encoder.json"].read_bytes(),
              gpt2_module.VOCAB_BPE.url: gpt2_files["vocab.bpe"].read_bytes()}
    monkeypatch.setattr(gpt2_module.urllib.request, "urlopen", lambda url, timeout: io.BytesIO(served[url]))
    assert BPETokenizer.gpt2().encode(" world") == [995]
    assert sorted(p.name for p in gpt2_module.gpt2_dir().iterdir()) == ["encoder.json", "vocab.bpe"]

    for path in gpt2_module.gpt2_dir().iterdir():
        path.unlink()
    served[gpt2_module.VOCAB_BPE.url] = served[gpt2_module.VOCAB_BPE.url][:-100]  # truncated download
    with pytest.raises(CorruptFileError, match="sha256"):
        BPETokenizer.gpt2()
    assert not (gpt2_module.gpt2_dir() / "vocab.bpe").exists()


def test_gpt2_corrupt_cached_file(gpt2_files, no_network):
    folder = _cache(gpt2_files, "encoder.json")
    (folder / "vocab.bpe").write_bytes(gpt2_files["vocab.bpe"].read_bytes().replace(b"t h", b"h t", 1))
    with pytest.raises(CorruptFileError, match="vocab.bpe has sha256"):
        BPETokenizer.gpt2()


def test_hf_gpt2_directories(gpt2_files, tmp_path, varied_documents):
    """Both layouts: vocab.json + merges.txt (hub checkpoints), tokenizer.json (transformers 5 saves)."""
    transformers = pytest.importorskip("transformers")
    hf = transformers.GPT2TokenizerFast(vocab=str(gpt2_files["encoder.json"]), merges=str(gpt2_files["vocab.bpe"]))
    hf.save_pretrained(tmp_path / "saved")
    (tmp_path / "hub").mkdir()
    (tmp_path / "hub" / "vocab.json").symlink_to(gpt2_files["encoder.json"])
    (tmp_path / "hub" / "merges.txt").symlink_to(gpt2_files["vocab.bpe"])
    text = varied_documents[0][:100_000] + "".join(HARD_CASES)
    expected = hf(text)["input_ids"]
    for folder in ("saved", "hub"):
        tok = load_tokenizer(tmp_path / folder)
        assert tok.encode(text) == expected
        assert tok.eot_id == hf.eos_token_id


def test_bad_vocabulary_files(gpt2_files, tmp_path):
    (tmp_path / "encoder.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(CorruptFileError, match="encoder.json"):
        BPETokenizer.from_files(tmp_path / "encoder.json", gpt2_files["vocab.bpe"])
    (tmp_path / "vocab.bpe").write_text("#version: 0.2\nĠ zzzqqq\n", encoding="utf-8")
    with pytest.raises(CorruptFileError, match="merge 1 .* whose join is in the vocabulary"):
        BPETokenizer.from_files(gpt2_files["encoder.json"], tmp_path / "vocab.bpe")
    with pytest.raises(MissingFileError):
        BPETokenizer.from_files(tmp_path / "absent.json", gpt2_files["vocab.bpe"])
    (tmp_path / "tokenizer.json").write_text('{"model": {"type": "WordPiece"}, "normalizer": null}', encoding="utf-8")
    with pytest.raises(CorruptFileError, match="not a byte-level BPE"):
        load_tokenizer(tmp_path)
    (tmp_path / "bad.tiktoken").write_text("!!notbase64 0\n", encoding="utf-8")
    with pytest.raises(CorruptFileError, match="line 1"):
        BPETokenizer.from_tiktoken(tmp_path / "bad.tiktoken")
