"""A radix tree of token prefixes holding their keys and values, shared by all requests.

An agent loop that resends its growing history, or search expansions of one prompt, find their
longest cached prefix here and only compute the tokens after it. Memory is bounded: least recently
used leaves are evicted first. (SGLang's RadixAttention is the model; here the tree holds copies of
KV segments, which the engine copies into a sequence's slot.)
"""

import itertools
from dataclasses import dataclass, field

from torch import Tensor

from baobab.engine.model import KVCache


@dataclass(eq=False)
class _Node:
    tokens: tuple[int, ...]
    k: Tensor | None  # layers x kv_heads x len(tokens) x head_dim
    v: Tensor | None
    parent: "_Node | None"
    children: dict[int, "_Node"] = field(default_factory=dict)
    last_used: int = 0


class PrefixCache:
    """Longest-prefix reuse of KV across requests, within `capacity` tokens.

    >>> cache = PrefixCache(capacity=10_000)  # doctest: +SKIP
    >>> used = cache.load(prompt[:-1], kv, slot=0)  # tokens whose KV is now in slot 0  # doctest: +SKIP
    >>> cache.insert(prompt, kv, slot=0)  # doctest: +SKIP
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.size = 0  # tokens held
        self.root = _Node((), None, None, None)
        self._clock = itertools.count(1)

    def load(self, tokens: list[int], kv: KVCache, slot: int) -> int:
        """Copy the KV of the longest cached prefix of `tokens` into `slot`; return its length."""
        position, node, now = 0, self.root, next(self._clock)
        while position < len(tokens):
            child = node.children.get(tokens[position])
            if child is None or child.k is None or child.v is None:
                break
            shared = _common(child.tokens, tokens, position)
            kv.k[:, slot, :, position:position + shared] = child.k[:, :, :shared]
            kv.v[:, slot, :, position:position + shared] = child.v[:, :, :shared]
            child.last_used = now
            position += shared
            if shared < len(child.tokens):
                break
            node = child
        return position

    def insert(self, tokens: list[int], kv: KVCache, slot: int) -> None:
        """Remember the KV of `tokens`, which `slot` holds at positions 0..len(tokens)."""
        if len(tokens) > self.capacity:
            return
        position, node, now = 0, self.root, next(self._clock)
        while position < len(tokens):
            child = node.children.get(tokens[position])
            if child is None:
                leaf = _Node(tuple(tokens[position:]), kv.k[:, slot, :, position:len(tokens)].clone(),
                             kv.v[:, slot, :, position:len(tokens)].clone(), node, last_used=now)
                node.children[tokens[position]] = leaf
                self.size += len(leaf.tokens)
                break
            shared = _common(child.tokens, tokens, position)
            if shared < len(child.tokens):
                child = self._split(child, shared)
            child.last_used = now
            position += shared
            node = child
        self._evict()

    def _split(self, node: _Node, at: int) -> _Node:
        """Cut a node's edge after `at` tokens; the returned upper part keeps the first `at`."""
        assert node.parent is not None and node.k is not None and node.v is not None
        upper = _Node(node.tokens[:at], node.k[:, :, :at].clone(), node.v[:, :, :at].clone(), node.parent,
                      {node.tokens[at]: node}, node.last_used)
        node.parent.children[node.tokens[0]] = upper
        node.tokens, node.k, node.v, node.parent = (node.tokens[at:], node.k[:, :, at:].clone(),
                                                    node.v[:, :, at:].clone(), upper)
        return upper

    def _evict(self) -> None:
        while self.size > self.capacity:
            leaves = [n for n in self._nodes() if not n.children and n is not self.root]
            oldest = min(leaves, key=lambda n: n.last_used)
            assert oldest.parent is not None
            del oldest.parent.children[oldest.tokens[0]]
            self.size -= len(oldest.tokens)

    def _nodes(self) -> list[_Node]:
        found, stack = [], [self.root]
        while stack:
            node = stack.pop()
            found.append(node)
            stack.extend(node.children.values())
        return found


def _common(edge: tuple[int, ...], tokens: list[int], start: int) -> int:
    """How many of `edge`'s tokens match `tokens` from `start`."""
    n = 0
    for a, b in zip(edge, itertools.islice(tokens, start, None), strict=False):
        if a != b:
            break
        n += 1
    return n


def token_bytes(kv: KVCache) -> int:
    """Bytes one cached token takes (keys and values of every layer)."""
    layers, _, heads, _, dim = kv.k.shape
    return int(2 * layers * heads * dim * kv.k.element_size())

