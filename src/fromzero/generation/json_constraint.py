"""Constrained decoding for ``response_format: {"type": "json_object"}``: the answer is a JSON object.

Nothing in a language model's training promises valid JSON, and a small model rarely writes it. So
before each token is chosen, :class:`JSONObjectConstraint` removes (score ``-inf``) every token whose
text cannot continue the answer so far as the beginning of a JSON object; the answer ends as soon as
the object closes. The tokens left are then sampled, or the best one taken, as usual.

Reading JSON. A small pushdown automaton reads the answer one *byte* at a time (:func:`advance`). Its
:class:`State` says what may come next (a key, a colon, a value, a comma, a closing bracket), where it
is inside a string, a number or ``true``/``false``/``null``, and which objects and arrays are open
(the stack). Bytes rather than characters, because a byte-level BPE token (GPT-2's) may hold half of a
UTF-8 character: bytes above 127 are allowed only inside strings, where any character is. A token is
allowed when the automaton accepts each of its bytes in turn.

Checking 50,257 tokens byte by byte at every step would be slow, so :class:`JSONVocabulary` keeps the
tokens in a trie: tokens that begin alike share the check of their beginning, and one refused byte
rules out every token below it. Inside a string nearly every token is allowed and leaves the state
as it was: the tokens without a quote, a backslash or a control character are allowed there in one
go, and only the others are walked. What a state allows is kept, since the same states come back at
every step.

Closing in time. An answer cut by ``max_tokens`` in the middle of the object would not parse, so a
token is allowed only if what it leaves open can still be closed with the tokens left
(:meth:`JSONVocabulary.closing`: the fewest characters that finish the object, each a token of its
own). Near the end the answer is steered to close. A ``max_tokens`` too small even for ``{}`` gives
the start of an object and finish reason ``"length"``, as OpenAI's API does.

The answer starts with the ``{`` itself (no whitespace first); JSON's whitespace is allowed between
its parts. Any tokenizer whose text is its tokens' texts joined works: characters, BPE, GPT-2.
"""

from __future__ import annotations

import re
from typing import NamedTuple, Protocol

import torch

from fromzero.errors import InputError

WHITESPACE = frozenset(b" \t\n\r")
HEX = frozenset(b"0123456789abcdefABCDEF")
ESCAPED = frozenset(b'"\\/bfnrt')  # the characters that may follow a backslash (and "u" with 4 hex digits)
CLOSER = {"{": "}", "[": "]"}
LITERALS = {"t": "rue", "f": "alse", "n": "ull"}  # the first letter of a value, and the letters it needs after
DIGITS = "0123456789"
# A number, -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?, read one character at a time: each part
# of it, and the part each next character leads to. "0", "int", "frac" and "exp" may end the number.
NUMBER = {
    "start": {"-": "-", "0": "0", **dict.fromkeys("123456789", "int")},
    "-": {"0": "0", **dict.fromkeys("123456789", "int")},
    "0": {".": ".", "e": "e", "E": "e"},
    "int": {**dict.fromkeys(DIGITS, "int"), ".": ".", "e": "e", "E": "e"},
    ".": dict.fromkeys(DIGITS, "frac"),
    "frac": {**dict.fromkeys(DIGITS, "frac"), "e": "e", "E": "e"},
    "e": {**dict.fromkeys(DIGITS, "exp"), "+": "e+", "-": "e+"},
    "e+": dict.fromkeys(DIGITS, "exp"),
    "exp": dict.fromkeys(DIGITS, "exp"),
}
NUMBER_ENDS = frozenset({"0", "int", "frac", "exp"})
NOT_PLAIN = re.compile(rb'["\\\x00-\x1f]')  # a byte that changes the state inside a string
END = -1  # the trie key under which a node lists the tokens that end there
IMPOSSIBLE = 1 << 30  # the closing cost of text the vocabulary cannot write one character at a time
CACHED_STATES = 4096  # states whose continuations a vocabulary keeps


class State(NamedTuple):
    """Where the automaton is. ``mode`` is what comes next:

    ``start`` (the object's ``{``, first thing in the answer), ``first_key`` (a key or ``}``, just
    after ``{``), ``next_key`` (a key, after a comma), ``colon``, ``value`` (after a colon or an
    array's comma), ``first_value`` (a value or ``]``, just after ``[``), ``after`` (a comma or the
    closing bracket, after a value), ``done`` (only whitespace); or inside something: ``in_key``,
    ``in_string``, ``number``, ``literal``.
    """

    mode: str
    stack: str = ""  # the open objects and arrays, outermost first: "{" and "["
    detail: str = ""  # in a string: "", "\\" after a backslash or "u3" (hex digits to come);
    # in a number: its part (NUMBER); in a literal: the letters still to come


def advance(state: State, byte: int) -> State | None:
    """The state after one more byte of the answer, or None when JSON allows no such byte there."""
    mode, stack, detail = state
    if mode in ("in_key", "in_string"):
        return _in_string(state, byte)
    char = chr(byte)
    if mode == "literal":
        if char != detail[0]:
            return None
        return State("literal", stack, detail[1:]) if len(detail) > 1 else State("after", stack)
    if mode == "number":
        if (part := NUMBER[detail].get(char)) is not None:
            return State("number", stack, part)
        if detail not in NUMBER_ENDS:
            return None
        mode = "after"  # the number ended just before this byte, which is read after it
    if mode == "start":  # the answer opens the object at once: no whitespace before it
        return State("first_key", "{") if char == "{" else None
    if byte in WHITESPACE:
        return State(mode, stack)
    if mode in ("first_key", "next_key") and char == '"':
        return State("in_key", stack)
    if mode == "colon":
        return State("value", stack) if char == ":" else None
    if mode in ("value", "first_value") and (started := _value(stack, char)) is not None:
        return started
    if mode == "after" and char == ",":
        return State("next_key" if stack[-1] == "{" else "value", stack)
    closes = mode == "after" or (mode, char) in (("first_key", "}"), ("first_value", "]"))
    if closes and stack and char == CLOSER[stack[-1]]:
        return State("after", stack[:-1]) if len(stack) > 1 else State("done")
    return None


def _value(stack: str, char: str) -> State | None:
    """The state after the first character of a value, or None if no value starts with it."""
    if char == '"':
        return State("in_string", stack)
    if char in CLOSER:
        return State("first_key" if char == "{" else "first_value", stack + char)
    if char in NUMBER["start"]:
        return State("number", stack, NUMBER["start"][char])
    if char in LITERALS:
        return State("literal", stack, LITERALS[char])
    return None


def _in_string(state: State, byte: int) -> State | None:
    mode, stack, detail = state
    if detail == "\\":
        if byte in ESCAPED:
            return State(mode, stack)
        return State(mode, stack, "u4") if byte == ord("u") else None
    if detail:  # "uN": N hex digits to come
        if byte not in HEX:
            return None
        left = int(detail[1]) - 1
        return State(mode, stack, f"u{left}" if left else "")
    if byte == ord('"'):
        return State("colon" if mode == "in_key" else "after", stack)
    if byte == ord("\\"):
        return State(mode, stack, "\\")
    return state if byte >= 0x20 else None  # a control character must be written as an escape


class Continuations(NamedTuple):
    """The tokens allowed after a state, and for each the fewest tokens that would then close the object."""

    tokens: torch.Tensor  # (N,) ids
    costs: torch.Tensor  # (N,)
    plain_cost: int  # in a string, the closing cost after a plain token (the state's own); else IMPOSSIBLE


class TokenizerLike(Protocol):
    special_tokens: dict[str, int]

    @property
    def vocab_size(self) -> int: ...
    def decode(self, ids: list[int]) -> str: ...


def token_bytes(tokenizer: TokenizerLike, token: int) -> bytes:
    """The bytes a token adds to the text: its own bytes for a byte-level BPE token (which may hold part
    of a character), else its text as UTF-8."""
    own = getattr(tokenizer, "token_bytes", None)
    return own(token) if own is not None else tokenizer.decode([token]).encode("utf-8")


class JSONVocabulary:
    """A tokenizer's vocabulary as the constraint needs it: each token's bytes in a trie, built once.

    ``size`` is the model's vocabulary size (it may exceed the tokenizer's: those ids are never allowed).
    Special tokens (end of text, padding) are never allowed either: the object's end ends the answer.
    """

    def __init__(self, tokenizer: TokenizerLike, size: int):
        special = set(tokenizer.special_tokens.values())
        self.size = size
        self.tokens = {token: data for token in range(min(size, tokenizer.vocab_size)) if token not in special
                       and (data := token_bytes(tokenizer, token))}
        self.single = {data.decode("latin-1"): token for token, data in self.tokens.items() if len(data) == 1}
        plain = {token for token, data in self.tokens.items() if not NOT_PLAIN.search(data)}
        self.plain = torch.zeros(size, dtype=torch.bool)
        self.plain[list(plain)] = True
        self.trie = _trie(self.tokens.items())
        self.non_plain_trie = _trie((token, data) for token, data in self.tokens.items() if token not in plain)
        self.value_cost = min(self.cost(value) for value in [*DIGITS, '""', "{}", "[]", "null", "true", "false"])
        self.digit_cost = min(self.cost(digit) for digit in DIGITS)
        hex_cost = min(self.cost(chr(byte)) for byte in HEX)
        self.escape_cost = min([self.cost(chr(byte)) for byte in ESCAPED] + [self.cost("u") + 4 * hex_cost])
        self.hex_cost = hex_cost
        self._continuations: dict[State, Continuations] = {}
        if self.closing(State("start")) >= IMPOSSIBLE:
            missing = [char for char in "{}" if char not in self.single]
            raise InputError(f"response_format json_object needs a tokenizer with the characters {{ and }} as tokens "
                             f"of their own; this model's has no {' or '.join(map(repr, missing))}")
        if tokenizer.decode([self.single["{"], self.single["}"]]) != "{}":
            raise InputError("response_format json_object needs a tokenizer whose text is its tokens' texts joined "
                             f"(characters, BPE, GPT-2); this model's writes {{ then }} as "
                             f"{tokenizer.decode([self.single['{'], self.single['}']])!r}")

    def cost(self, text: str) -> int:
        """Tokens needed to write ``text`` one character at a time (IMPOSSIBLE if a character is no token)."""
        return len(text) if all(char in self.single for char in text) else IMPOSSIBLE

    def closing(self, state: State) -> int:
        """The fewest tokens that finish the object from ``state``, writing one character per token."""
        mode, stack, detail = state
        tail = sum(self.cost(CLOSER[opened]) for opened in stack)  # a bracket for each open container
        if mode == "done":
            return 0
        if mode == "start":
            return self.cost("{}")
        if mode in ("first_key", "first_value", "after"):
            return tail
        if mode == "next_key":
            return self.cost('"":') + self.value_cost + tail
        if mode == "colon":
            return self.cost(":") + self.value_cost + tail
        if mode == "value":
            return self.value_cost + tail
        if mode == "number":
            return (0 if detail in NUMBER_ENDS else self.digit_cost) + tail
        if mode == "literal":
            return self.cost(detail) + tail
        end = self.cost('"') + (self.cost(":") + self.value_cost if mode == "in_key" else 0) + tail
        if detail == "\\":
            return self.escape_cost + end
        return (int(detail[1]) * self.hex_cost if detail else 0) + end

    def continuations(self, state: State) -> Continuations:
        """The tokens JSON allows after ``state``, and what each leaves to close. Cached: the same states
        come back at every step and in every answer."""
        if (known := self._continuations.get(state)) is None:
            plain = state.mode in ("in_key", "in_string") and not state.detail
            found: dict[int, State] = {}
            _walk(self.non_plain_trie if plain else self.trie, state, found)
            closing = {after: self.closing(after) for after in set(found.values())}
            known = Continuations(torch.tensor(list(found), dtype=torch.long),
                                  torch.tensor([closing[after] for after in found.values()], dtype=torch.long),
                                  self.closing(state) if plain else IMPOSSIBLE)
            if len(self._continuations) >= CACHED_STATES:
                self._continuations.clear()
            self._continuations[state] = known
        return known

    def follow(self, state: State, token: int) -> State | None:
        """The state after the whole of ``token``, or None if JSON does not allow it there."""
        data = self.tokens.get(token)
        if data is None:  # a special token, or an id the tokenizer does not have
            return None
        for byte in data:
            if (state := advance(state, byte)) is None:
                return None
        return state


def _trie(tokens) -> dict:
    """Nested dicts, one level per byte; a node lists under END the tokens whose bytes end there."""
    root: dict = {}
    for token, data in tokens:
        node = root
        for byte in data:
            node = node.setdefault(byte, {})
        node.setdefault(END, []).append(token)
    return root


def _walk(node: dict, state: State, found: dict[int, State]) -> None:
    for byte, child in node.items():
        if byte == END:
            found.update(dict.fromkeys(child, state))
        elif (after := advance(state, byte)) is not None:
            _walk(child, after, found)


class JSONObjectConstraint:
    """One answer's constraint: :meth:`mask` before each token is chosen, :meth:`push` after it.

    ``max_new_tokens`` is the answer's length limit, which the object must close within.
    """

    def __init__(self, vocabulary: JSONVocabulary, max_new_tokens: int):
        self.vocabulary = vocabulary
        self.left = max_new_tokens  # tokens the answer may still add
        self.state = State("start")

    def allowed(self) -> torch.Tensor:
        """(V,) bool: the tokens that continue the object and leave enough tokens to close it.

        When no token leaves enough (``max_tokens`` is too small even for ``{}``), every token that
        continues the object is allowed: the answer is then cut, with finish reason ``"length"``.
        """
        vocabulary = self.vocabulary
        options = vocabulary.continuations(self.state)
        budget = self.left - 1  # tokens left after this one
        if min(options.costs.min().item() if len(options.costs) else IMPOSSIBLE, options.plain_cost) > budget:
            budget = IMPOSSIBLE - 1
        if options.plain_cost <= budget:
            keep = vocabulary.plain.clone()
        else:
            keep = torch.zeros(vocabulary.size, dtype=torch.bool)
        keep[options.tokens[options.costs <= budget]] = True
        return keep

    def mask(self, scores: torch.Tensor) -> torch.Tensor:
        """``scores`` (1, V) with every token :meth:`allowed` refuses at ``-inf``."""
        return scores.masked_fill(~self.allowed().to(scores.device), -float("inf"))

    def push(self, token: int) -> bool:
        """Read the chosen token; True once the object is closed (the answer is complete)."""
        state = self.vocabulary.follow(self.state, token)
        if state is None:
            raise ValueError(f"token {token} cannot continue the JSON object here: it was not allowed")
        self.state, self.left = state, self.left - 1
        return state.mode == "done"
