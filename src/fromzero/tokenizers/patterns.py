"""Pre-tokenization patterns: how text is cut into chunks before BPE sees it.

BPE never merges across chunk boundaries, so the pattern decides what a token can be: with these
patterns a token never mixes letters with digits or punctuation, and a word keeps the space before
it (" world"). Both are the exact strings tiktoken uses; the possessive quantifiers (``++``, ``?+``)
need the ``regex`` module, not ``re``.
"""

from __future__ import annotations

import regex

from fromzero.errors import InputError

# GPT-2 (tiktoken "gpt2" / "r50k_base"): contractions, letters, digits, other symbols, spaces.
GPT2_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""

# GPT-4 (tiktoken "cl100k_base"): case-insensitive contractions, numbers of at most 3 digits,
# newlines kept apart from other spaces.
GPT4_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+"""
    r"""|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
)

PATTERNS = {"gpt2": GPT2_PATTERN, "gpt4": GPT4_PATTERN}


def resolve_pattern(pattern: str) -> str:
    """Turn ``"gpt2"``/``"gpt4"`` into its regex; any other string must itself be a valid regex."""
    pattern = PATTERNS.get(pattern, pattern)
    try:
        regex.compile(pattern)
    except regex.error as err:
        raise InputError(
            f"pattern must be 'gpt2', 'gpt4' or a valid regex; {pattern!r} fails: {err}"
        ) from None
    return pattern
