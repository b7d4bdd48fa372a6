"""BERT's WordPiece tokenizer: clean and split the text into words, then each word into known pieces.

BPE (``bpe.py``) builds tokens up from bytes by merging; WordPiece goes the other way, cutting each
word into the longest pieces found in a fixed vocabulary (``vocab.txt``, one token per line, the
line number is the id). It runs in two stages:

1. **Basic tokenization** (BERT's ``BasicTokenizer``): drop control characters, turn every kind of
   space into " ", put spaces around CJK ideographs (Chinese has no spaces between words, so each
   character is a word), lower-case and strip accents (NFD, then drop the combining marks:
   "Café" -> "cafe") when the model is uncased, then split on spaces and cut punctuation off as
   words of its own: "Hello, world!" -> ["hello", ",", "world", "!"].
2. **WordPiece**: greedy longest match first. "unaffable" -> the longest prefix in the vocabulary
   ("un"), then the longest continuation of the rest, written with a ``##`` prefix ("##aff",
   "##able"). If some part of a word matches nothing, or the word is absurdly long
   (``max_input_chars_per_word``), the whole word becomes ``[UNK]``.

An encoded sentence is ``[CLS] pieces [SEP]``: BERT-family models read the output at ``[CLS]`` as
a summary of the sentence and ``[SEP]`` marks where it ends. Special tokens typed in the text
("[MASK]") are kept whole, as Hugging Face does. Settings come from a Hugging Face folder
(``tokenizer.json`` or ``tokenizer_config.json``), and the ids match Hugging Face's exactly (tests
compare them).
"""

from __future__ import annotations

import os
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from fromzero.errors import CorruptFileError, InputError, MissingFileError
from fromzero.files import read_json, write_text
from fromzero.tokenizers.base import Tokenizer, check_ids

VOCAB_FILE = "vocab.txt"
SPECIAL_NAMES = ("unk", "cls", "sep", "pad", "mask")
DEFAULT_SPECIALS = {name: f"[{name.upper()}]" for name in SPECIAL_NAMES}
# Code-point blocks BERT treats as CJK ideographs (Japanese kana and Korean hangul are not among them).
CJK_RANGES = (
    (0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
    (0x2B740, 0x2B81F), (0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F),
)  # fmt: skip
# Decoding glues these to the token before them, as Hugging Face's WordPiece decoder does.
ATTACHED = frozenset(".?!,")


@dataclass
class EncodedBatch:
    """Sentences padded on the right to one length: ``attention_mask`` is 1 for real tokens, 0 for padding."""

    input_ids: list[list[int]]
    attention_mask: list[list[int]]


def is_cjk(char: str) -> bool:
    return any(low <= ord(char) <= high for low, high in CJK_RANGES)


def is_control(char: str) -> bool:
    """Unicode "other" characters (control, format, unassigned), except the tabs and newlines that are spaces."""
    return char not in "\t\n\r" and unicodedata.category(char).startswith("C")


def is_punctuation(char: str) -> bool:
    """ASCII symbols such as ``$`` and ``^`` count too, though Unicode files them as symbols, not punctuation."""
    code = ord(char)
    return 33 <= code <= 47 or 58 <= code <= 64 or 91 <= code <= 96 or 123 <= code <= 126 or (
        unicodedata.category(char).startswith("P")
    )


class WordPieceTokenizer(Tokenizer):
    """Text <-> ids with BERT's rules; ``vocab[i]`` is the token of id ``i``."""

    kind = "wordpiece"

    def __init__(
        self,
        vocab: Sequence[str],
        *,
        lowercase: bool = True,
        strip_accents: bool | None = None,
        split_cjk: bool = True,
        specials: dict[str, str] | None = None,
        continuing_prefix: str = "##",
        max_input_chars_per_word: int = 100,
        max_length: int | None = 512,
        name: str = "wordpiece",
    ) -> None:
        """``strip_accents=None`` strips them exactly when lower-casing (BERT's rule); ``specials`` maps
        ``unk``/``cls``/``sep``/``pad``/``mask`` to their token strings; ``max_length`` counts
        ``[CLS]`` and ``[SEP]`` (None: no truncation)."""
        self.vocab = list(vocab)
        self._id_of = {token: i for i, token in enumerate(self.vocab)}
        self.specials = {**DEFAULT_SPECIALS, **(specials or {})}
        missing = [token for token in (self.specials["unk"], self.specials["cls"], self.specials["sep"])
                   if token not in self._id_of]
        if missing:
            raise InputError(f"the WordPiece vocabulary lacks the special token(s) {', '.join(missing)}")
        if max_length is not None and max_length < 2:
            raise InputError(f"max_length must leave room for [CLS] and [SEP] (>= 2), got {max_length}")
        self.name = name
        self.lowercase = lowercase
        self.strip_accents = lowercase if strip_accents is None else strip_accents
        self.split_cjk = split_cjk
        self.continuing_prefix = continuing_prefix
        self.max_input_chars_per_word = max_input_chars_per_word
        self.max_length = max_length
        self.special_tokens = {t: self._id_of[t] for t in self.specials.values() if t in self._id_of}
        # Longest first, so that a special token that contains another is matched whole.
        specials_by_length = sorted(self.special_tokens, key=len, reverse=True)
        self._special_pattern = re.compile("(" + "|".join(map(re.escape, specials_by_length)) + ")")

    @classmethod
    def from_folder(cls, folder: str | os.PathLike, name: str | None = None) -> WordPieceTokenizer:
        """Read a Hugging Face BERT tokenizer folder: ``vocab.txt`` plus ``tokenizer_config.json`` and/or
        ``tokenizer.json`` (the latter wins where both set something: it is what fast tokenizers run)."""
        folder = Path(folder)
        options: dict[str, Any] = {}
        specials: dict[str, str] = {}
        if (folder / "tokenizer_config.json").is_file():
            config = read_json(folder / "tokenizer_config.json")
            options["lowercase"] = config.get("do_lower_case", True)
            options["strip_accents"] = config.get("strip_accents")
            options["split_cjk"] = config.get("tokenize_chinese_chars", True)
            if isinstance(config.get("model_max_length"), int) and config["model_max_length"] < 1_000_000:
                options["max_length"] = config["model_max_length"]  # huge values mean "no limit set"
            for special in SPECIAL_NAMES:
                token = config.get(f"{special}_token")
                if isinstance(token, dict):  # newer files store {"content": "[UNK]", ...}
                    token = token.get("content")
                if isinstance(token, str):
                    specials[special] = token
        if (folder / "tokenizer.json").is_file():
            fast = read_json(folder / "tokenizer.json")
            normalizer = fast.get("normalizer") or {}
            model = fast.get("model") or {}
            if normalizer.get("type") == "BertNormalizer":
                options["lowercase"] = normalizer.get("lowercase", True)
                options["strip_accents"] = normalizer.get("strip_accents")
                options["split_cjk"] = normalizer.get("handle_chinese_chars", True)
            if model.get("type") == "WordPiece":
                options["continuing_prefix"] = model.get("continuing_subword_prefix", "##")
                options["max_input_chars_per_word"] = model.get("max_input_chars_per_word", 100)
                if isinstance(model.get("unk_token"), str):
                    specials["unk"] = model["unk_token"]
        return cls(read_vocab(folder / VOCAB_FILE), specials=specials, name=name or folder.name, **options)

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    @property
    def pad_id(self) -> int:
        return self._id_of.get(self.specials["pad"], 0)

    def normalize(self, text: str) -> str:
        """Stage 1a: clean, space out CJK, strip accents, lower-case (the order Hugging Face uses)."""
        chars = []
        for char in text:
            if char in "\x00\ufffd" or is_control(char):
                continue
            if char.isspace() or unicodedata.category(char) == "Zs":
                chars.append(" ")
            elif self.split_cjk and is_cjk(char):
                chars.append(f" {char} ")
            else:
                chars.append(char)
        text = "".join(chars)
        if self.strip_accents:
            text = "".join(c for c in unicodedata.normalize("NFD", text) if unicodedata.category(c) != "Mn")
        if self.lowercase:
            # Character by character, like Hugging Face: str.lower() would turn a word-final sigma into "ς".
            text = "".join(c.lower() for c in text)
        return text

    def split_words(self, text: str) -> list[str]:
        """Stage 1b: split normalized text on spaces, and every punctuation mark into a word of its own."""
        words = []
        for chunk in text.split():
            start = 0
            for i, char in enumerate(chunk):
                if is_punctuation(char):
                    if start < i:
                        words.append(chunk[start:i])
                    words.append(char)
                    start = i + 1
            if start < len(chunk):
                words.append(chunk[start:])
        return words

    def word_pieces(self, word: str) -> list[str]:
        """Stage 2: greedy longest-match-first pieces of one word, or ``[UNK]`` if it cannot be covered."""
        if len(word) > self.max_input_chars_per_word:
            return [self.specials["unk"]]
        pieces = []
        start = 0
        while start < len(word):
            end = len(word)
            while end > start:
                piece = word[start:end] if start == 0 else self.continuing_prefix + word[start:end]
                if piece in self._id_of:
                    break
                end -= 1
            if end == start:  # not even one character matched
                return [self.specials["unk"]]
            pieces.append(piece)
            start = end
        return pieces

    def tokenize(self, text: str) -> list[str]:
        """The token strings of ``text`` without ``[CLS]``/``[SEP]``; special tokens in the text stay whole."""
        tokens: list[str] = []
        for part in self._special_pattern.split(text) if self.special_tokens else [text]:
            if part in self.special_tokens:
                tokens.append(part)
                continue
            for word in self.split_words(self.normalize(part)):
                tokens.extend(self.word_pieces(word))
        return tokens

    def encode(self, text: str, add_special_tokens: bool = True, max_length: int | None = None) -> list[int]:
        """``[CLS] tokens [SEP]`` as ids, the tokens cut so the whole fits ``max_length`` (default: the tokenizer's)."""
        ids = [self._id_of[token] for token in self.tokenize(text)]
        if not add_special_tokens:
            return ids if max_length is None else ids[:max_length]
        limit = max_length or self.max_length
        if limit is not None:
            ids = ids[: limit - 2]
        return [self._id_of[self.specials["cls"]], *ids, self._id_of[self.specials["sep"]]]

    def encode_batch(self, texts: Sequence[str], max_length: int | None = None) -> EncodedBatch:
        """Encode each text and pad them on the right to the longest, with the mask that tells padding apart."""
        encoded = [self.encode(text, max_length=max_length) for text in texts]
        longest = max((len(ids) for ids in encoded), default=0)
        return EncodedBatch(
            [ids + [self.pad_id] * (longest - len(ids)) for ids in encoded],
            [[1] * len(ids) + [0] * (longest - len(ids)) for ids in encoded],
        )

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
        """Join the tokens with spaces, except ``##`` pieces and ``. ? ! ,``, which join what precedes them.

        Lossy: lower-casing, stripped accents and the exact spacing cannot be recovered.
        """
        ids = check_ids(ids, self.vocab_size)
        special_ids = set(self.special_tokens.values())
        tokens = [self.vocab[i] for i in ids if not (skip_special_tokens and i in special_ids)]
        parts = []
        for i, token in enumerate(tokens):
            if i and token.startswith(self.continuing_prefix):
                parts.append(token.removeprefix(self.continuing_prefix))
            else:
                parts.append(token if i == 0 or token in ATTACHED else " " + token)
        return "".join(parts)

    def _settings(self) -> dict[str, Any]:
        return {
            "lowercase": self.lowercase, "strip_accents": self.strip_accents, "split_cjk": self.split_cjk,
            "specials": self.specials, "continuing_prefix": self.continuing_prefix,
            "max_input_chars_per_word": self.max_input_chars_per_word, "max_length": self.max_length,
        }  # fmt: skip

    def _save_files(self, directory: Path) -> None:
        write_text(directory / VOCAB_FILE, "".join(token + "\n" for token in self.vocab))

    @classmethod
    def _from_settings(cls, settings: dict[str, Any], directory: Path) -> WordPieceTokenizer:
        return cls(
            read_vocab(directory / VOCAB_FILE), lowercase=settings["lowercase"],
            strip_accents=settings["strip_accents"], split_cjk=settings["split_cjk"], specials=settings["specials"],
            continuing_prefix=settings["continuing_prefix"],
            max_input_chars_per_word=settings["max_input_chars_per_word"], max_length=settings["max_length"],
            name=settings["name"],
        )  # fmt: skip


def read_vocab(path: Path) -> list[str]:
    """The tokens of ``vocab.txt``, one per line. Split on "\\n" only: some tokens are other Unicode line breaks."""
    if not path.is_file():
        raise MissingFileError(f"{path} does not exist; a WordPiece tokenizer needs its vocabulary ({VOCAB_FILE})")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise CorruptFileError(f"{path} is not UTF-8 text ({err}); it is not a WordPiece vocabulary") from None
    tokens = [line.removesuffix("\r") for line in text.split("\n")]
    if tokens and tokens[-1] == "":
        tokens.pop()
    if not tokens:
        raise CorruptFileError(f"{path} is empty; a WordPiece vocabulary lists one token per line")
    return tokens
