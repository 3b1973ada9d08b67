"""RadixCache: unit tests, then a stateful property test against a naive prefix store."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
import torch
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from sglang.runtime.cache import (
    InsertResult,
    MatchResult,
    RadixCache,
    RadixNode,
    SlotAllocator,
)

Prefix = tuple[int, ...]


def make(num_slots: int = 64, disabled: bool = False) -> tuple[SlotAllocator, RadixCache]:
    alloc = SlotAllocator(num_slots, debug=True)
    return alloc, RadixCache(alloc, disabled=disabled)


def put(alloc: SlotAllocator, cache: RadixCache, ids: list[int]) -> torch.Tensor:
    """Insert ``ids`` with fresh slots, freeing the duplicates per the ownership rule."""
    slots = alloc.alloc(len(ids))
    assert slots is not None
    r = cache.insert(ids, slots)
    alloc.free(slots[: r.already_cached_len])
    cache.check_integrity()
    return slots


def depth(handle: RadixNode) -> int:
    n, node = 0, handle
    while node.parent is not None:
        n += len(node.key)
        node = node.parent
    return n


def tree_prefixes(cache: RadixCache) -> dict[Prefix, int]:
    """Every token prefix stored in the tree, with the slot of its last token."""
    out: dict[Prefix, int] = {}
    stack: list[tuple[Prefix, RadixNode]] = [((), cache.root)]
    while stack:
        base, node = stack.pop()
        for i in range(len(node.key)):
            out[base + node.key[: i + 1]] = int(node.slots[i])
        for child in node.children.values():
            stack.append((base + node.key, child))
    return out


def accounted(alloc: SlotAllocator, cache: RadixCache, outside: int = 0) -> bool:
    return alloc.available + cache.evictable_size + cache.locked_size + outside == alloc.num_slots


# ---- unit tests ---------------------------------------------------------------------------------


def test_empty_cache_matches_nothing() -> None:
    _, cache = make()
    m = cache.match([1, 2, 3])
    assert m.cached_len == 0 and m.slots.numel() == 0 and m.slots.dtype == torch.int64
    assert m.handle is cache.root
    assert cache.match([]).handle is cache.root
    cache.check_integrity()


def test_insert_then_match_full_and_partial() -> None:
    alloc, cache = make()
    slots = put(alloc, cache, [1, 2, 3, 4, 5])
    m = cache.match([1, 2, 3, 4, 5, 6])
    assert m.cached_len == 5 and torch.equal(m.slots, slots)
    m = cache.match([1, 2, 9])
    assert m.cached_len == 2 and torch.equal(m.slots, slots[:2])
    assert depth(m.handle) == 2, "a match ending mid-edge must split so the handle covers it"
    assert set(cache.root.children[1].children) == {3}
    assert cache.evictable_size == 5 and cache.locked_size == 0
    assert accounted(alloc, cache)
    cache.check_integrity()


def test_insert_reports_already_cached_and_takes_only_the_rest() -> None:
    alloc, cache = make(16)
    first = put(alloc, cache, [1, 2, 3])
    slots = alloc.alloc(5)
    assert slots is not None
    r = cache.insert([1, 2, 3, 7, 8], slots)
    assert r.already_cached_len == 3 and depth(r.handle) == 5
    # The tree took slots[3:]; slots[:3] duplicate the tree's and are still ours.
    assert accounted(alloc, cache, outside=3)
    alloc.free(slots[:3])
    m = cache.match([1, 2, 3, 7, 8])
    assert m.slots.tolist() == first.tolist() + slots[3:].tolist()
    cache.check_integrity()


def test_insert_of_a_prefix_splits_and_stores_nothing() -> None:
    alloc, cache = make()
    put(alloc, cache, [4, 5, 6, 7])
    slots = alloc.alloc(2)
    assert slots is not None
    r = cache.insert([4, 5], slots)
    assert r.already_cached_len == 2 and depth(r.handle) == 2
    alloc.free(slots)
    assert cache.total_size == 4
    cache.check_integrity()


def test_insert_rejects_length_mismatch() -> None:
    _, cache = make()
    with pytest.raises(ValueError):
        cache.insert([1, 2], torch.tensor([0]))


def test_insert_copies_slots() -> None:
    alloc, cache = make()
    slots = put(alloc, cache, [1, 2])
    slots[:] = 99  # the caller reusing its buffer must not corrupt the tree
    assert cache.match([1, 2]).slots.tolist() == [0, 1]


def test_lock_unlock_sizes_and_underflow() -> None:
    alloc, cache = make()
    put(alloc, cache, [1, 2, 3, 4])
    put(alloc, cache, [1, 2, 8])
    h = cache.match([1, 2, 3, 4]).handle
    cache.lock(h)
    assert cache.locked_size == 4 and cache.evictable_size == 1
    cache.lock(h)
    cache.unlock(h)
    assert cache.locked_size == 4
    cache.unlock(h)
    assert cache.locked_size == 0 and cache.evictable_size == 5
    with pytest.raises(ValueError, match="not locked"):
        cache.unlock(h)
    cache.lock(cache.root)  # root locks are no-ops
    cache.unlock(cache.root)
    cache.check_integrity()


def test_split_keeps_lock_count_on_both_halves() -> None:
    alloc, cache = make()
    put(alloc, cache, [1, 2, 3, 4, 5])
    h = cache.match([1, 2, 3, 4, 5]).handle
    cache.lock(h)
    cache.lock(h)
    m = cache.match([1, 2, 9])  # splits the locked edge
    assert m.handle.lock_ref == 2 and h.lock_ref == 2
    cache.check_integrity()
    cache.unlock(h)
    cache.unlock(h)
    assert m.handle.lock_ref == 0 and cache.locked_size == 0
    cache.check_integrity()


def test_evict_is_lru_and_cascades_to_parents() -> None:
    alloc, cache = make()
    put(alloc, cache, [1, 1])
    put(alloc, cache, [2, 2])
    put(alloc, cache, [3, 3])
    cache.match([1, 1])  # now [2, 2] is the least recently used
    assert cache.evict(1) == 2
    assert cache.match([2, 2]).cached_len == 0
    assert cache.match([1, 1]).cached_len == 2 and cache.match([3, 3]).cached_len == 2
    # [3, 3] was touched last, so [1, 1] goes next.
    assert cache.evict(2) == 2 and cache.match([1]).cached_len == 0
    put(alloc, cache, [3, 3, 4])
    put(alloc, cache, [3, 3, 5])
    cache.match([3, 3, 5])
    # Leaves [4] then [5]; then their parent [3, 3] becomes a leaf and goes too.
    assert cache.evict(4) == 4
    assert cache.total_size == 0 and alloc.available == alloc.num_slots
    cache.check_integrity()


def test_locked_nodes_are_never_evicted() -> None:
    alloc, cache = make()
    put(alloc, cache, [1, 2, 3])
    put(alloc, cache, [1, 2, 4, 4])
    put(alloc, cache, [5])
    h = cache.match([1, 2, 3]).handle
    cache.lock(h)
    freed = cache.evict(100)
    assert freed == 3  # [4, 4] and [5]; the locked path [1, 2] + [3] stays
    assert cache.match([1, 2, 3]).cached_len == 3
    assert cache.evictable_size == 0 and cache.locked_size == 3
    assert accounted(alloc, cache)
    cache.unlock(h)
    assert cache.evict(1) == 1  # leaf [3] first, whole-leaf granularity
    cache.check_integrity()


def test_evict_frees_whole_leaves_at_least_requested() -> None:
    alloc, cache = make()
    put(alloc, cache, [1] * 10)
    assert cache.evict(1) == 10
    assert cache.evict(5) == 0


def test_stale_handle_is_rejected() -> None:
    alloc, cache = make()
    put(alloc, cache, [1, 2])
    h = cache.match([1, 2]).handle
    cache.evict(2)
    with pytest.raises(ValueError, match="stale"):
        cache.lock(h)


def test_reset_frees_everything_and_refuses_while_locked() -> None:
    alloc, cache = make()
    put(alloc, cache, [1, 2, 3])
    put(alloc, cache, [1, 4])
    h = cache.match([1, 4]).handle
    cache.lock(h)
    with pytest.raises(RuntimeError):
        cache.reset()
    cache.unlock(h)
    cache.reset()
    assert alloc.available == alloc.num_slots and cache.total_size == 0
    assert cache.match([1, 2]).cached_len == 0
    cache.check_integrity()


def test_disabled_mode_caches_nothing() -> None:
    alloc, cache = make(disabled=True)
    slots = alloc.alloc(3)
    assert slots is not None
    r = cache.insert([1, 2, 3], slots)
    assert r.already_cached_len == 3 and r.handle is cache.root
    m = cache.match([1, 2, 3])
    assert m.cached_len == 0 and m.slots.numel() == 0 and m.handle is cache.root
    cache.lock(m.handle)
    cache.unlock(m.handle)
    cache.unlock(m.handle)
    assert cache.total_size == 0 and cache.evict(10) == 0
    assert accounted(alloc, cache, outside=3)  # the caller still owns every slot
    alloc.free(slots)
    cache.check_integrity()


def test_check_integrity_catches_corruption() -> None:
    alloc, cache = make()
    put(alloc, cache, [1, 2, 3])
    h = cache.match([1, 2, 3]).handle
    h.lock_ref = 1
    with pytest.raises(AssertionError, match="evictable_size"):
        cache.check_integrity()
    h.lock_ref = 0
    alloc.free(h.slots[:1])
    with pytest.raises(AssertionError, match="free list"):
        cache.check_integrity()


def test_pretty_print() -> None:
    alloc, cache = make()
    put(alloc, cache, [1, 2, 3])
    put(alloc, cache, [1, 5])
    text = cache.pretty_print()
    assert text.startswith("<root>") and "[2, 3]" in text and "[5]" in text


# ---- stateful property test ---------------------------------------------------------------------

NUM_SLOTS = 40
ids_st = st.lists(st.integers(0, 3), max_size=12)
idx_st = st.integers(0, 1000)


@dataclass
class Req:
    ids: list[int]
    handle: RadixNode
    cached_len: int
    prefix: torch.Tensor  # tree slots of ids[:cached_len], pinned by the lock on handle
    own: torch.Tensor = field(default_factory=lambda: torch.empty(0, dtype=torch.int64))
    extra_locks: int = 0


class RadixMachine(RuleBasedStateMachine):
    """Drives the cache the way the scheduler does and checks it against a naive prefix store.

    The naive model maps every stored token prefix to the slot of its last token (a radix tree
    holds exactly one token per distinct prefix) and keeps a per-prefix access time that mirrors
    the tree's clock. Eviction cannot be predicted exactly (ties), so after an evict the model is
    re-read from the tree and the change is checked: a subset, freed == removed, locked prefixes
    kept, and everything removed no more recently used than any surviving unlocked leaf.
    """

    def __init__(self) -> None:
        super().__init__()
        self.alloc = SlotAllocator(NUM_SLOTS, debug=True)
        self.cache = RadixCache(self.alloc)
        self.model: dict[Prefix, int] = {}
        self.atime: dict[Prefix, int] = {}
        self.clock = 0
        self.reqs: list[Req] = []

    # -- mirrored operations --

    def _longest(self, ids: list[int]) -> int:
        n = 0
        while n < len(ids) and tuple(ids[: n + 1]) in self.model:
            n += 1
        return n

    def _match(self, ids: list[int]) -> MatchResult:
        expected = self._longest(ids)
        m = self.cache.match(ids)
        assert m.cached_len == expected
        assert m.slots.tolist() == [self.model[tuple(ids[: i + 1])] for i in range(expected)]
        assert depth(m.handle) == expected
        self.clock += 1
        for i in range(expected):
            self.atime[tuple(ids[: i + 1])] = self.clock
        return m

    def _insert(self, ids: list[int], slots: torch.Tensor) -> InsertResult:
        expected = self._longest(ids)
        r = self.cache.insert(ids, slots)
        assert r.already_cached_len == expected
        assert depth(r.handle) == len(ids)
        self.clock += 1
        for i in range(len(ids)):
            p = tuple(ids[: i + 1])
            if i >= expected:
                self.model[p] = int(slots[i])
            self.atime[p] = self.clock
        return r

    def _locked_prefixes(self) -> set[Prefix]:
        return {tuple(r.ids[: i + 1]) for r in self.reqs for i in range(r.cached_len)}

    def _evict(self, k: int) -> None:
        before = self.model
        evictable, locked = self.cache.evictable_size, self.cache.locked_size
        freed = self.cache.evict(k)
        after = tree_prefixes(self.cache)
        assert after.keys() <= before.keys() and all(before[p] == s for p, s in after.items())
        evicted = before.keys() - after.keys()
        assert len(evicted) == freed <= evictable
        assert freed >= min(k, evictable), "evict stopped early although leaves were left"
        assert self.cache.locked_size == locked
        lockset = self._locked_prefixes()
        assert lockset <= after.keys(), "a locked prefix was evicted"
        if evicted:
            assert bool(self.alloc.is_free(torch.tensor([before[p] for p in evicted])).all())
            leaves = [
                p
                for p in after
                if p not in lockset and not any(p + (t,) in after for t in range(4))
            ]
            if leaves:
                newest_gone = max(self.atime[p] for p in evicted)
                assert newest_gone <= min(self.atime[p] for p in leaves), "eviction is not LRU"
        self.model = after
        for p in evicted:
            del self.atime[p]

    def _alloc(self, n: int) -> torch.Tensor | None:
        slots = self.alloc.alloc(n)
        if slots is None:
            self._evict(n - self.alloc.available)
            slots = self.alloc.alloc(n)
        return slots

    def _pick(self, i: int) -> Req:
        return self.reqs[i % len(self.reqs)]

    # -- rules --

    @rule(ids=ids_st)
    def match(self, ids: list[int]) -> None:
        self._match(ids)

    @rule(ids=ids_st)
    def insert_fresh(self, ids: list[int]) -> None:
        slots = self._alloc(len(ids))
        if slots is not None:
            r = self._insert(ids, slots)
            self.alloc.free(slots[: r.already_cached_len])

    @rule(k=st.integers(0, 30))
    def evict(self, k: int) -> None:
        self._evict(k)

    @rule(ids=ids_st)
    def start_request(self, ids: list[int]) -> None:
        m = self._match(ids)
        self.cache.lock(m.handle)
        req = Req(list(ids), m.handle, m.cached_len, m.slots)
        self.reqs.append(req)  # before _alloc, so an eviction there sees the lock
        own = self._alloc(len(ids) - m.cached_len)
        if own is None:
            self.reqs.pop()
            self.cache.unlock(m.handle)
        else:
            req.own = own

    @precondition(lambda self: self.reqs)
    @rule(i=idx_st, extra=st.lists(st.integers(0, 3), min_size=1, max_size=4))
    def decode(self, i: int, extra: list[int]) -> None:
        req = self._pick(i)
        if len(req.ids) < 24 and (slots := self._alloc(len(extra))) is not None:
            req.ids += extra
            req.own = torch.cat([req.own, slots])

    @precondition(lambda self: self.reqs)
    @rule(i=idx_st)
    def lock_again(self, i: int) -> None:
        req = self._pick(i)
        self.cache.lock(req.handle)
        req.extra_locks += 1

    @precondition(lambda self: any(r.extra_locks for r in self.reqs))
    @rule(i=idx_st)
    def unlock_extra(self, i: int) -> None:
        req = self._pick(i)
        if req.extra_locks:
            self.cache.unlock(req.handle)
            req.extra_locks -= 1

    def _insert_req(self, req: Req) -> None:
        slots = torch.cat([req.prefix, req.own])
        r = self._insert(req.ids, slots)
        # The locked prefix cannot have been evicted, so the tree has at least that much.
        assert r.already_cached_len >= req.cached_len
        self.alloc.free(slots[req.cached_len : r.already_cached_len])

    @precondition(lambda self: self.reqs)
    @rule(i=idx_st)
    def cache_unfinished(self, i: int) -> None:
        req = self._pick(i)
        self._insert_req(req)
        m = self._match(req.ids)
        assert m.cached_len == len(req.ids) and torch.equal(m.slots[: req.cached_len], req.prefix)
        for _ in range(1 + req.extra_locks):  # lock the new path before dropping the old one
            self.cache.lock(m.handle)
        for _ in range(1 + req.extra_locks):
            self.cache.unlock(req.handle)
        req.handle, req.cached_len, req.prefix = m.handle, len(req.ids), m.slots
        req.own = torch.empty(0, dtype=torch.int64)

    @precondition(lambda self: self.reqs)
    @rule(i=idx_st)
    def finish(self, i: int) -> None:
        req = self.reqs.pop(i % len(self.reqs))
        self._insert_req(req)
        for _ in range(1 + req.extra_locks):
            self.cache.unlock(req.handle)

    @precondition(lambda self: self.reqs)
    @rule(i=idx_st)
    def abort(self, i: int) -> None:
        req = self.reqs.pop(i % len(self.reqs))
        for _ in range(1 + req.extra_locks):
            self.cache.unlock(req.handle)
        self.alloc.free(req.own)

    @precondition(lambda self: not self.reqs)
    @rule()
    def reset(self) -> None:
        self.cache.reset()
        self.model.clear()
        self.atime.clear()
        assert self.alloc.available == NUM_SLOTS

    # -- invariants --

    @invariant()
    def consistent(self) -> None:
        self.cache.check_integrity()
        outside = torch.cat([r.own for r in self.reqs] + [torch.empty(0, dtype=torch.int64)])
        assert accounted(self.alloc, self.cache, outside=outside.numel())
        tree = tree_prefixes(self.cache)
        assert tree == self.model
        assert len(self.model) == self.cache.total_size
        lockset = self._locked_prefixes()
        assert lockset <= self.model.keys()
        assert self.cache.locked_size == len(lockset)
        for r in self.reqs:
            want = [self.model[tuple(r.ids[: j + 1])] for j in range(r.cached_len)]
            assert r.prefix.tolist() == want
        tree_slots = torch.tensor(list(tree.values()), dtype=torch.int64)
        owned = torch.cat([tree_slots, outside])
        assert torch.unique(owned).numel() == owned.numel(), "request slot also in the tree"
        self.alloc.check(owned=owned)


RadixMachine.TestCase.settings = settings(
    max_examples=200,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestRadixMachine = RadixMachine.TestCase
