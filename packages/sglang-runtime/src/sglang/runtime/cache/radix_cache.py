"""Radix tree over token ids whose edges carry the KV slots of those tokens (RadixAttention).

Ownership: slots stored in the tree belong to the tree until ``evict``/``reset`` hands them back
to the allocator. Callers pin a prefix with ``lock(handle)`` while a request reads it; locks are
counted on every node from the handle up to the root, so a node is evictable exactly when its
count is zero, and then its whole subtree is too.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from sglang.runtime.cache.allocator import SlotAllocator
from sglang.runtime.cache.radix_check import check_tree, format_tree

_EMPTY = torch.empty(0, dtype=torch.int64)
_ids = itertools.count()


class RadixNode:
    """One edge of the tree (the edge from ``parent`` into this node). Opaque to callers."""

    __slots__ = ("key", "slots", "children", "parent", "lock_ref", "last_access", "uid", "dead")

    def __init__(self, key: tuple[int, ...], slots: torch.Tensor, parent: RadixNode | None) -> None:
        self.key = key
        self.slots = slots
        self.children: dict[int, RadixNode] = {}
        self.parent = parent
        self.lock_ref = 0
        self.last_access = 0
        # Tie-breaker for the eviction heap, which must never compare nodes themselves.
        self.uid = next(_ids)
        # Set once the node leaves the tree so a stale handle cannot corrupt the lock counts.
        self.dead = False

    def __repr__(self) -> str:
        return f"RadixNode(len={len(self.key)}, lock={self.lock_ref}, t={self.last_access})"


@dataclass(frozen=True, slots=True)
class MatchResult:
    cached_len: int
    slots: torch.Tensor
    handle: RadixNode


@dataclass(frozen=True, slots=True)
class InsertResult:
    already_cached_len: int
    handle: RadixNode


def _common_len(key: tuple[int, ...], ids: Sequence[int], start: int) -> int:
    n = min(len(key), len(ids) - start)
    # Whole-edge equality is one C-level compare; only a partial match walks token by token.
    if tuple(ids[start : start + n]) == key[:n]:
        return n
    i = 0
    while i < n and key[i] == ids[start + i]:
        i += 1
    return i


class RadixCache:
    def __init__(self, allocator: SlotAllocator, disabled: bool = False) -> None:
        self.allocator = allocator
        self.disabled = disabled
        self._clock = itertools.count(1)
        self._init_tree()

    def _init_tree(self) -> None:
        self._root = RadixNode((), _EMPTY, None)
        self._evictable = 0
        self._locked = 0
        # Unlocked leaves, kept incrementally so evict() need not walk the whole tree.
        self._candidates: set[RadixNode] = set()

    @property
    def root(self) -> RadixNode:
        return self._root

    @property
    def evictable_size(self) -> int:
        return self._evictable

    @property
    def locked_size(self) -> int:
        return self._locked

    @property
    def total_size(self) -> int:
        return self._evictable + self._locked

    # ---- lookup -------------------------------------------------------------------------------

    def _walk(self, ids: Sequence[int]) -> tuple[RadixNode, int, list[RadixNode], int]:
        """Follow ``ids`` from the root, splitting an edge the walk stops inside.

        Returns the deepest node reached, how many tokens it covers, the path below root and the
        access time stamped on that path.
        """
        now = next(self._clock)
        node, pos, path = self._root, 0, []
        while pos < len(ids):
            child = node.children.get(ids[pos])
            if child is None:
                break
            n = _common_len(child.key, ids, pos)
            partial = n < len(child.key)
            if partial:
                child = self._split(child, n)
            child.last_access = now
            path.append(child)
            node, pos = child, pos + n
            if partial:
                break
        return node, pos, path, now

    def match(self, ids: Sequence[int]) -> MatchResult:
        if self.disabled or not ids:
            return MatchResult(0, _EMPTY, self._root)
        node, pos, path, _ = self._walk(ids)
        slots = torch.cat([p.slots for p in path]) if path else _EMPTY
        return MatchResult(pos, slots, node)

    def _split(self, node: RadixNode, n: int) -> RadixNode:
        """Cut ``node``'s edge after ``n`` tokens; return the new upper node."""
        parent = node.parent
        assert parent is not None and 0 < n < len(node.key)
        upper = RadixNode(node.key[:n], node.slots[:n], parent)
        # Both halves keep the count: every lock that covered the old edge covers both pieces.
        upper.lock_ref = node.lock_ref
        upper.last_access = node.last_access
        upper.children[node.key[n]] = node
        parent.children[node.key[0]] = upper
        node.key = node.key[n:]
        node.slots = node.slots[n:]
        node.parent = upper
        return upper

    # ---- locking ------------------------------------------------------------------------------

    def _check_handle(self, handle: RadixNode) -> None:
        if handle.dead:
            raise ValueError("stale radix handle: its node was evicted or reset")

    def lock(self, handle: RadixNode) -> None:
        if self.disabled or handle is self._root:
            return
        self._check_handle(handle)
        node: RadixNode | None = handle
        while node is not None and node is not self._root:
            if node.lock_ref == 0:
                self._evictable -= len(node.key)
                self._locked += len(node.key)
                self._candidates.discard(node)
            node.lock_ref += 1
            node = node.parent

    def unlock(self, handle: RadixNode) -> None:
        if self.disabled or handle is self._root:
            return
        self._check_handle(handle)
        # Ancestors hold at least the handle's count, so checking the handle covers the path.
        if handle.lock_ref <= 0:
            raise ValueError("unlock of a radix handle that is not locked")
        node: RadixNode | None = handle
        while node is not None and node is not self._root:
            node.lock_ref -= 1
            if node.lock_ref == 0:
                self._evictable += len(node.key)
                self._locked -= len(node.key)
                if not node.children:
                    self._candidates.add(node)
            node = node.parent

    # ---- insertion ----------------------------------------------------------------------------

    def insert(self, ids: Sequence[int], slots: torch.Tensor) -> InsertResult:
        """Add ``ids``; the tree takes ``slots[already_cached_len:]``, the caller keeps the rest."""
        if slots.numel() != len(ids):
            raise ValueError(f"insert: {len(ids)} ids but {slots.numel()} slots")
        if self.disabled or not ids:
            return InsertResult(len(ids), self._root)
        node, pos, _, now = self._walk(ids)
        already = pos
        if pos < len(ids):
            # Copy: the caller's tensor (often a view of a bigger buffer) may be reused later.
            leaf = RadixNode(tuple(ids[pos:]), slots[pos:].to("cpu", torch.int64, copy=True), node)
            leaf.last_access = now
            node.children[leaf.key[0]] = leaf
            self._candidates.discard(node)
            self._candidates.add(leaf)
            self._evictable += len(leaf.key)
            node = leaf
        return InsertResult(already, node)

    # ---- eviction -----------------------------------------------------------------------------

    def _detach(self, node: RadixNode) -> None:
        node.dead = True
        node.parent = None
        node.children = {}

    def evict(self, num_tokens: int) -> int:
        """Free at least ``num_tokens`` slots from unlocked leaves, least recently used first."""
        if self.disabled or num_tokens <= 0:
            return 0
        heap = [(n.last_access, n.uid, n) for n in self._candidates]
        heapq.heapify(heap)
        freed = 0
        released: list[torch.Tensor] = []
        while freed < num_tokens and heap:
            _, _, node = heapq.heappop(heap)
            parent = node.parent
            assert parent is not None
            del parent.children[node.key[0]]
            self._candidates.discard(node)
            self._evictable -= len(node.key)
            freed += len(node.key)
            released.append(node.slots)
            self._detach(node)
            # A parent's access time is >= its child's, so the heap still pops in LRU order.
            if parent is not self._root and not parent.children and parent.lock_ref == 0:
                self._candidates.add(parent)
                heapq.heappush(heap, (parent.last_access, parent.uid, parent))
        if released:
            self.allocator.free(torch.cat(released))
        return freed

    def reset(self) -> None:
        """Give every tree slot back to the allocator. Only valid while nothing is locked."""
        if self._locked > 0:
            raise RuntimeError(f"reset() while {self._locked} cached tokens are locked")
        released: list[torch.Tensor] = []
        stack = list(self._root.children.values())
        while stack:
            node = stack.pop()
            stack.extend(node.children.values())
            released.append(node.slots)
            self._detach(node)
        if released:
            self.allocator.free(torch.cat(released))
        self._init_tree()

    # ---- debugging ----------------------------------------------------------------------------

    def check_integrity(self) -> None:
        check_tree(self)

    def pretty_print(self, max_tokens: int = 8) -> str:
        return format_tree(self._root, max_tokens)

    def __repr__(self) -> str:
        return (
            f"RadixCache(evictable={self._evictable}, locked={self._locked}, "
            f"disabled={self.disabled})"
        )
