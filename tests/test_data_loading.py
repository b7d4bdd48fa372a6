"""fromzero.data: loading text and JSONL, cleaning, splitting, statistics, bundled paths."""

from __future__ import annotations

import json
import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fromzero.data import (
    clean_text,
    corpus_path,
    jsonl_stats,
    load_documents,
    load_jsonl,
    load_text,
    read_jsonl,
    split_documents,
    text_stats,
    train_val_split,
)
from fromzero.errors import CorruptFileError, InputError, MissingFileError


def test_load_text_normalises_line_endings_and_bom(tmp_path):
    path = tmp_path / "a.txt"
    path.write_bytes("\ufeffFirst line\r\nSecond line\rThird\n".encode("utf-8"))
    assert load_text(path) == "First line\nSecond line\nThird\n"


def test_folder_of_text_files_in_sorted_order_each_file_a_document(tmp_path):
    (tmp_path / "b.txt").write_text("Bee story.\n\nSecond paragraph.\n", encoding="utf-8")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "c.txt").write_text("Sea story.\n\n\nAnother sea story.", encoding="utf-8")
    (tmp_path / "a.txt").write_text("Ant story.", encoding="utf-8")
    (tmp_path / "notes.md").write_text("not a text corpus file", encoding="utf-8")
    (tmp_path / ".hidden").mkdir()
    (tmp_path / ".hidden" / "x.txt").write_text("hidden", encoding="utf-8")
    assert load_documents(tmp_path) == [
        "Ant story.",
        "Bee story.\n\nSecond paragraph.",
        "Sea story.",
        "Another sea story.",
    ]
    assert split_documents(load_text(tmp_path)) == load_documents(tmp_path)


def test_documents_split_on_two_blank_lines_even_with_stray_spaces():
    text = "One.\n\nStill one.\n \n\t\nTwo.\n\n\n\n\nThree.\n"
    assert split_documents(text) == ["One.\n\nStill one.", "Two.", "Three."]


@pytest.mark.parametrize(
    ("content", "error", "words"),
    [
        (None, MissingFileError, "does not exist"),
        (b"", InputError, "is empty"),
        (b"  \n\n\t \n", InputError, "is empty"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", CorruptFileError, "binary"),
        ("caf\u00e9".encode("latin-1"), CorruptFileError, "not UTF-8"),
    ],
    ids=["missing", "empty", "blank", "binary", "latin-1"],
)
def test_bad_text_files_give_clear_errors(tmp_path, content, error, words):
    path = tmp_path / "input.txt"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(error, match=words) as info:
        load_text(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_folder_without_text_files_and_file_expected(tmp_path):
    with pytest.raises(InputError, match="no .txt or .html files"):
        load_text(tmp_path)
    with pytest.raises(InputError, match="is a folder"):
        load_jsonl(tmp_path)


def test_jsonl_reads_objects_and_ignores_blank_lines(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"a": 1}\n\n{"a": "\u0939\u093f\u0902\u0926\u0940"}\n', encoding="utf-8")
    assert load_jsonl(path) == [{"a": 1}, {"a": "\u0939\u093f\u0902\u0926\u0940"}]


def test_malformed_jsonl_names_the_line_unless_skipping(tmp_path, capsys):
    path = tmp_path / "d.jsonl"
    path.write_text('{"a": 1}\n{"a": 2}\n{"a": \n[1, 2]\n{"a": 5}\n', encoding="utf-8")
    with pytest.raises(CorruptFileError, match=r"line 3: not valid JSON .*and 1 more bad line"):
        load_jsonl(path)
    content = read_jsonl(path)
    assert [(bad.line, bad.reason.split(" (")[0]) for bad in content.bad_lines] == [
        (3, "not valid JSON"),
        (4, "expected a JSON object, got list"),
    ]
    assert load_jsonl(path, skip_bad=True) == [{"a": 1}, {"a": 2}, {"a": 5}]
    assert "skipped 2 bad line(s)" in capsys.readouterr().err


def test_jsonl_with_only_bad_lines_is_an_error_even_when_skipping(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text("not json\n", encoding="utf-8")
    with pytest.raises(InputError, match="no valid records"):
        load_jsonl(path, skip_bad=True)


def test_bundled_names_resolve_to_package_files():
    assert corpus_path("stories").name == "stories.txt"
    assert corpus_path("education_qa").is_dir()
    assert corpus_path("education_qa", "train") == corpus_path("education_qa/train")
    with pytest.raises(InputError, match="unknown corpus 'poems'"):
        corpus_path("poems")
    with pytest.raises(InputError, match="no part 'dev'"):
        corpus_path("education_qa", "dev")
    with pytest.raises(InputError, match="JSONL corpus"):
        load_text("education_qa")
    assert load_text("stories") == corpus_path("stories").read_text(encoding="utf-8")


def test_clean_text_normalises_unicode_whitespace_and_controls():
    raw = "  Cafe\u0301\u00a0 au\tlait\r\nline\u2028two\x00\x07\ufeff  \n\n\n\n\nNext paragraph.  "
    assert clean_text(raw) == "Caf\u00e9 au lait\nline\ntwo\n\nNext paragraph."
    # Zero-width joiners belong to Indic scripts and must survive.
    assert clean_text("\u0915\u094d\u200d\u0937") == "\u0915\u094d\u200d\u0937"


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_clean_text_is_idempotent_and_leaves_no_control_characters(text):
    cleaned = clean_text(text)
    assert clean_text(cleaned) == cleaned
    assert unicodedata.is_normalized("NFC", cleaned)
    assert not any(unicodedata.category(c) == "Cc" and c not in "\n\t" for c in cleaned)
    assert "\n\n\n" not in cleaned and cleaned == cleaned.strip()


def test_train_val_split_is_deterministic_disjoint_and_complete():
    items = list(range(100))
    train, val = train_val_split(items, 0.2, seed=7)
    assert (train, val) == train_val_split(items, 0.2, seed=7)
    assert len(val) == 20 and sorted(train + val) == items
    assert train == sorted(train) and val == sorted(val)
    assert val != train_val_split(items, 0.2, seed=8)[1]
    assert [len(part) for part in train_val_split(["a", "b"], 0.01)] == [1, 1]
    with pytest.raises(InputError):
        train_val_split(items, 1.0)
    with pytest.raises(InputError):
        train_val_split(["only"], 0.5)


def test_text_stats_counts():
    text = "The cat sat.\nThe cat didn't run.\n\n\nA new story: 42 cats!"
    stats = text_stats(text, top=2)
    assert (stats.characters, stats.lines, stats.documents) == (len(text), 5, 2)
    assert stats.words == 12  # "didn't" is one word; "42" counts
    assert stats.unique_characters == len(set(text))
    assert stats.top_words == [("the", 2), ("cat", 2)]


def test_jsonl_stats_counts_fields_subjects_and_grades():
    records = [
        {"instruction": "ab", "subject": "science", "grade": 6},
        {"instruction": "abcd", "subject": "science", "grade": 7},
        {"instruction": "abc", "subject": "civics"},
    ]
    stats = jsonl_stats(records)
    assert stats.records == 3
    assert stats.fields == {"instruction": 3, "subject": 3, "grade": 2}
    assert stats.mean_chars["instruction"] == 3.0
    assert stats.by_subject == {"science": 2, "civics": 1}
    assert stats.by_grade == {"6": 1, "7": 1}


# ---------------------------------------------------------------- JSONL: one rule wherever text is read
RECORDS = [
    {"text": "The cat sat on the mat.", "story": "A fox ran home.", "source": "http://a.example/1"},
    {"text": "A dog ran.\n\n\n\nIt was happy.", "story": "  A bird sang.  ", "source": "http://a.example/2"},
    {"text": "", "story": None, "source": "empty"},
]


def _write_jsonl(path, rows, extra_lines=()):
    lines = [json.dumps(row) for row in rows] + list(extra_lines)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_jsonl_is_parsed_wherever_text_is_loaded(tmp_path):
    path = _write_jsonl(tmp_path / "corpus.jsonl", RECORDS)
    # a record is one document, even with blank lines in it; its empty text gives none
    assert load_documents(path) == ["The cat sat on the mat.", "A dog ran.\n\n\n\nIt was happy."]
    text = load_text(path)
    assert text == "The cat sat on the mat.\n\n\nA dog ran.\n\n\n\nIt was happy."
    assert "source" not in text and "{" not in text


def test_jsonl_text_field_is_chosen_and_records_without_it_are_bad_lines(tmp_path, capsys):
    path = _write_jsonl(tmp_path / "corpus.jsonl", RECORDS)
    assert load_documents(path, text_field="story") == ["A fox ran home.", "A bird sang."]
    with pytest.raises(InputError) as info:
        load_documents(path, text_field="title")
    message = str(info.value)
    assert "no record has a 'title' field (its fields: text, story, source)" in message
    assert "--text-field NAME" in message and "\n" not in message

    mixed = _write_jsonl(tmp_path / "mixed.jsonl", RECORDS[:1], ['{"text": 7}', "not json", '{"other": "x"}'])
    with pytest.raises(CorruptFileError, match=r"mixed.jsonl: line 2: 'text' holds int, not text \(and 2 more bad lines\)"):
        load_text(mixed)
    assert load_documents(mixed, skip_bad=True) == ["The cat sat on the mat."]
    warning = " ".join(capsys.readouterr().err.split())
    assert "skipped 3 bad line(s)" in warning and warning.endswith("mixed.jsonl: 2, 3, 4")


def test_bundled_jsonl_corpora_are_read_by_part_and_text_field():
    answers = [record["output"].strip() for record in load_jsonl("education_qa/train")]
    assert load_documents("education_qa/train", text_field="output") == answers
    with pytest.raises(InputError) as info:
        load_text("preferences")
    assert "no record has a 'text' field (its fields: prompt, chosen, rejected" in str(info.value)


def test_jsonl_errors_name_the_command_line_not_the_python_api(tmp_path):
    path = _write_jsonl(tmp_path / "d.jsonl", [{"text": "fine"}], ["{broken"])
    with pytest.raises(CorruptFileError) as info:
        load_jsonl(path)
    assert "--skip-bad" in str(info.value) and "skip_bad" not in str(info.value)
    with pytest.raises(InputError) as info:
        load_text("education_qa")
    message = str(info.value)
    assert "load_jsonl" not in message and "`fromzero data stats education_qa`" in message
    assert "education_qa/train, education_qa/test" in message


def test_several_sources_give_their_documents_in_order(tmp_path):
    answers = load_documents("education_qa/train", text_field="output")
    stories = load_documents("stories")
    assert load_documents(["stories", "education_qa/train"], text_field="output") == stories + answers
    assert load_documents(("education_qa/train",), text_field="output") == answers


def test_bpe_n_trains_a_tokenizer_on_the_data_and_prepare_joins_sources(tmp_path):
    from fromzero.cli import main
    from fromzero.data.prepare import build_tokenizer
    from fromzero.tokenizers import BPETokenizer, load_tokenizer

    documents = load_documents(["stories", "education_qa/train"], text_field="output")
    tokenizer = build_tokenizer("bpe:400", documents)
    assert tokenizer.vocab_size == 400 and tokenizer.eot_id is not None
    assert tokenizer.ranks == BPETokenizer.train(documents, 400).ranks  # the library's trainer, on these documents
    with pytest.raises(InputError, match="more than 257 tokens"):
        build_tokenizer("bpe:257", documents)

    out = tmp_path / "shards"
    assert main(["data", "prepare", "stories", "education_qa/train", "--text-field", "output",
                 "--tokenizer", "bpe:400", "--out", str(out)]) == 0
    assert load_tokenizer(out).ranks == tokenizer.ranks
    assert "### Answer" not in load_tokenizer(out).decode(list(range(256, 400)))  # answers only, no template text


def test_train_config_takes_one_source_or_several():
    from fromzero.training.config import TrainConfig

    assert TrainConfig(data=["stories"]).data == "stories"
    assert TrainConfig(data=("stories", "education_qa/train")).data == ["stories", "education_qa/train"]
    with pytest.raises(InputError, match="at least one source"):
        TrainConfig(data=[])
