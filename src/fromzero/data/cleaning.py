"""Cleaning raw text so a model learns language, not encoding accidents.

Text gathered from files and web pages carries invisible differences: the same letter written
as one code point or as a letter plus a combining accent, Windows line endings, non-breaking
spaces, stray control characters. A tokenizer would treat each variant as a different symbol,
wasting vocabulary and confusing the model, so every collected text goes through
:func:`clean_text` first.
"""

from __future__ import annotations

import re
import unicodedata

# Line and paragraph separators some editors and web pages use instead of "\n".
_LINE_BREAKS = re.compile(r"\r\n|\r|\u2028|\u2029|\x0b|\x0c|\x85")
# Spaces and tabs inside a line. "\s" would also match "\n", which we keep.
_HORIZONTAL_SPACE = re.compile(r"[^\S\n]+")
_MANY_BLANK_LINES = re.compile(r"\n{3,}")


def _is_unwanted(char: str) -> bool:
    """Control characters (except newline) and the byte-order mark carry no meaning in prose.

    Format characters such as the zero-width joiner are kept: Indic scripts need them.
    """
    return (unicodedata.category(char) == "Cc" and char not in "\n\t") or char == "\ufeff"


def clean_text(text: str) -> str:
    """Return ``text`` normalised for training.

    - Unicode NFC, so "é" is always one code point;
    - every kind of line break becomes ``"\\n"``;
    - control characters are removed (a tab counts as a space, so words never run together);
    - runs of spaces and tabs become one space; lines lose leading and trailing spaces;
    - more than one blank line in a row becomes one blank line (a paragraph break);
    - the result has no leading or trailing whitespace.

    Cleaning is idempotent: ``clean_text(clean_text(t)) == clean_text(t)``.
    """
    text = _LINE_BREAKS.sub("\n", text)
    text = "".join(char for char in text if not _is_unwanted(char))
    text = unicodedata.normalize("NFC", text)
    lines = (_HORIZONTAL_SPACE.sub(" ", line).strip() for line in text.split("\n"))
    text = "\n".join(lines)
    return _MANY_BLANK_LINES.sub("\n\n", text).strip()
