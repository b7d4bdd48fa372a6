"""The prefix cache: a chat's next turn does not recompute the keys and values of the turns before it.

A chat client sends the whole conversation with every message, so turn 5's prompt is turn 4's prompt,
turn 4's answer and one new question; every request also starts with the same system prompt. The
keys and values (K/V) of those tokens were computed before, and since a token's K/V depend only on
the tokens at or before it (causal attention) and on its absolute position, they are the same again.
So the scheduler keeps them here after each request, and a new prompt that starts the same way
copies them into its KV cache and runs only the tokens that are new (the *prefill* of a 400-token
prompt becomes that of a 20-token question).

Why a radix tree (the layout of SGLang's RadixAttention): each edge holds a run of tokens and their
K/V, and a path from the root spells a cached prefix. Looking up a prompt walks down it token by
token, so the longest cached prefix is found exactly, whatever its length; and the turns of one
conversation share their common part instead of storing it once per turn (turn 2's entry adds only
turn 1's answer and turn 2's question to the path of turn 1). The other common layout, a dict keyed
by the hashes of block-aligned prefixes (vLLM's), suits a KV cache kept in fixed-size pages, which
this one is not (each row's cache is one contiguous run of columns), and it matches only whole
blocks: up to a block of tokens at the end of every match would be recomputed.

Memory is bounded by ``budget_bytes`` (the K/V bytes held): past it, the least recently used leaves
go first (a leaf's ancestors were used at least as recently, so they outlive it). The cache is keyed
by adapter, since an adapter changes the K/V: ``invalidate(adapter)`` drops one adapter's entries
(call it when it is reloaded or removed), ``clear()`` all of them when the weights change (the
scheduler does it itself when :func:`weights_version` changes). Every method takes one lock: the
scheduler's thread fills and reads the cache while another thread may invalidate it.

K/V layout: each edge keeps one tensor ``(2, n_layer, n_head, tokens, head_dim)``, keys then values.
"""

from __future__ import annotations

import heapq
import itertools
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from fromzero.errors import InputError


@dataclass(eq=False)
class _Node:
    """An edge of the tree and the node it leads to: its tokens, their K/V, and what may follow."""

    tokens: tuple[int, ...]
    kv: torch.Tensor | None  # (2, n_layer, n_head, len(tokens), head_dim); None at a root
    parent: _Node | None
    children: dict[int, _Node] = field(default_factory=dict)  # by their first token
    used: int = 0  # the LRU clock's time of the last lookup or insert through this edge

    @property
    def nbytes(self) -> int:
        return 0 if self.kv is None else self.kv.nelement() * self.kv.element_size()


class PrefixCache:
    """K/V of earlier prompts, by adapter and token ids; :meth:`lookup` the longest cached prefix of a prompt.

    ``budget_bytes`` bounds the K/V bytes held (least recently used entries are evicted beyond it).
    ``hits`` and ``misses`` count the lookups that found a prefix or none; ``reused`` the tokens found.
    """

    def __init__(self, budget_bytes: int):
        if budget_bytes < 1:
            raise InputError(f"the prefix cache needs a budget of at least 1 byte, got {budget_bytes}")
        self.budget_bytes = budget_bytes
        self.bytes = 0
        self.hits = self.misses = self.reused = 0
        self._roots: dict[str | None, _Node] = {}
        self._clock = itertools.count(1)
        self._lock = threading.Lock()

    def lookup(self, adapter: str | None, ids: Sequence[int]) -> tuple[int, list[torch.Tensor]]:
        """``(n, pieces)``: the longest cached prefix ``ids[:n]`` for ``adapter`` and its K/V, one piece per
        edge of the path, each ``(2, n_layer, n_head, tokens, head_dim)``, in order; ``(0, [])`` if none.

        The pieces are views of the cache: copy them where they are needed (into a KV cache) rather
        than joining them first, which would copy every byte once more on the way to the first token.
        """
        with self._lock:
            now = next(self._clock)
            node, matched, pieces = self._roots.get(adapter), 0, []
            while node is not None and matched < len(ids):
                child = node.children.get(ids[matched])
                if child is None:
                    break
                same = _common_length(child.tokens, ids, matched)
                pieces.append(child.kv[..., :same, :])
                child.used = now
                matched += same
                node = child if same == len(child.tokens) else None
            if not matched:
                self.misses += 1
                return 0, []
            self.hits += 1
            self.reused += matched
            return matched, pieces

    def insert(self, adapter: str | None, ids: Sequence[int], keys: Sequence[torch.Tensor],
               values: Sequence[torch.Tensor]) -> None:
        """Keep the K/V of ``ids``: ``keys[layer]`` and ``values[layer]`` are ``(n_head, len(ids), head_dim)``.

        Only the part not cached yet is copied. A sequence larger than the whole budget is not kept.
        """
        if any(t.size(-2) != len(ids) for t in (*keys, *values)):
            raise InputError(f"the K/V to cache must cover the {len(ids)} tokens given, one column each")
        if not ids or sum(t.nelement() * t.element_size() for t in (*keys, *values)) > self.budget_bytes:
            return
        with self._lock:
            now = next(self._clock)
            node, at = self._roots.setdefault(adapter, _Node((), None, None)), 0
            while at < len(ids):
                child = node.children.get(ids[at])
                if child is None:
                    kv = torch.stack([torch.stack([layer[:, at:] for layer in keys]),
                                      torch.stack([layer[:, at:] for layer in values])])
                    child = node.children[ids[at]] = _Node(tuple(ids[at:]), kv, node)
                    self.bytes += child.nbytes
                    at = len(ids)
                else:
                    same = _common_length(child.tokens, ids, at)
                    if same < len(child.tokens):
                        _split(child, same)
                    at += same
                child.used = now
                node = child
            self._evict()

    def invalidate(self, adapter: str | None) -> None:
        """Drop every entry of ``adapter`` (None: the base model): its K/V are stale once it changes."""
        with self._lock:
            root = self._roots.pop(adapter, None)
            if root is not None:
                self.bytes -= sum(node.nbytes for node in _walk(root))

    def clear(self) -> None:
        """Drop everything (the weights changed: no cached K/V is right any more)."""
        with self._lock:
            self._roots.clear()
            self.bytes = 0

    def _evict(self) -> None:
        """Drop least recently used leaves until the K/V fit the budget; a parent left childless is a leaf too."""
        if self.bytes <= self.budget_bytes:
            return
        order = itertools.count()  # breaks ties in the heap: nodes are not comparable
        leaves = [(node.used, next(order), node) for root in self._roots.values() for node in _walk(root)
                  if node.kv is not None and not node.children]
        heapq.heapify(leaves)
        while self.bytes > self.budget_bytes and leaves:
            _, _, node = heapq.heappop(leaves)
            parent = node.parent
            del parent.children[node.tokens[0]]
            self.bytes -= node.nbytes
            if parent.kv is not None and not parent.children:
                heapq.heappush(leaves, (parent.used, next(order), parent))


def weights_version(model: torch.nn.Module) -> tuple[tuple[int, int], ...]:
    """A value that changes when any weight of ``model`` does: replaced by another tensor (its ``id``), or
    written in place (torch counts every in-place write in a tensor's ``_version``, the counter autograd
    checks). The scheduler clears its prefix cache when it changes: K/V computed with old weights are wrong."""
    tensors = itertools.chain(model.parameters(), model.buffers())
    return tuple((id(t), t._version) for t in tensors if not t.is_inference())  # inference tensors keep no count


def _common_length(tokens: tuple[int, ...], ids: Sequence[int], start: int) -> int:
    """How many of ``tokens`` equal ``ids[start:]``, from the first on."""
    same = 0
    for token, other in zip(tokens, itertools.islice(ids, start, None)):
        if token != other:
            break
        same += 1
    return same


def _split(node: _Node, at: int) -> None:
    """Cut ``node``'s edge after ``at`` tokens: the rest becomes its only child, which keeps its children.

    Both halves are copied, not viewed: a view would keep the whole old tensor alive after the other
    half is evicted, and the byte count would lie.
    """
    rest = _Node(node.tokens[at:], node.kv[..., at:, :].clone(), node, node.children, node.used)
    for child in rest.children.values():
        child.parent = rest
    node.tokens, node.kv, node.children = node.tokens[:at], node.kv[..., :at, :].clone(), {rest.tokens[0]: rest}


def _walk(root: _Node) -> list[_Node]:
    """``root`` and every node below it."""
    nodes, stack = [], [root]
    while stack:
        node = stack.pop()
        nodes.append(node)
        stack.extend(node.children.values())
    return nodes
