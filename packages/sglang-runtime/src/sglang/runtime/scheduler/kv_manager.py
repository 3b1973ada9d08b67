"""A request's KV lifecycle: admission with a cached prefix, growth, caching, release, retraction.

Every slot is in exactly one place: the allocator's free list, the radix tree (evictable or
locked), or owned by one running request (`req_to_token[row, tree_len:kv_len]`).
`check_integrity` proves it.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from sglang.runtime.cache.allocator import SlotAllocator
from sglang.runtime.cache.kv_pool import KVPool
from sglang.runtime.cache.radix_cache import MatchResult, RadixCache
from sglang.runtime.cache.req_to_token import ReqToTokenPool
from sglang.runtime.scheduler.request import Req


class KVManager:
    def __init__(
        self, kv_pool: KVPool, allocator: SlotAllocator, req_pool: ReqToTokenPool, cache: RadixCache
    ) -> None:
        self.kv_pool = kv_pool
        self.allocator = allocator
        self.req_pool = req_pool
        self.cache = cache

    @property
    def num_slots(self) -> int:
        return self.allocator.num_slots

    @property
    def available_tokens(self) -> int:
        """Slots that could be handed out now, evicting unlocked cache if needed."""
        return self.allocator.available + self.cache.evictable_size

    def alloc_slots(self, n: int) -> torch.Tensor | None:
        if n == 0:
            return torch.empty(0, dtype=torch.int64)
        if self.allocator.available < n:
            self.cache.evict(n - self.allocator.available)
        return self.allocator.alloc(n)

    def match(self, req: Req) -> MatchResult:
        return self.cache.match(req.fill_ids[: req.max_cacheable_prefix])

    def admit(self, req: Req, match: MatchResult, chunk: int) -> torch.Tensor | None:
        """Give `req` a table row, its cached prefix and slots for its first `chunk` new tokens.
        Returns the new slots, or None (nothing changed) when rows or slots run out."""
        row = self.req_pool.alloc()
        if row is None:
            return None
        self.cache.lock(match.handle)
        slots = self.alloc_slots(chunk)
        if slots is None:
            self.cache.unlock(match.handle)
            self.req_pool.free(row)
            return None
        req.row, req.handle = row, match.handle
        req.tree_len = req.kv_len = match.cached_len
        if match.cached_len:
            self.req_pool.write(row, 0, match.slots)
        self.req_pool.write(row, match.cached_len, slots)
        req.extend_len = chunk
        return slots

    def grow(self, req: Req, n: int) -> torch.Tensor | None:
        """Slots for the next n tokens of an admitted request (next chunk, or a decode step)."""
        slots = self.alloc_slots(n)
        if slots is not None:
            self.req_pool.write(req.row, req.kv_len, slots)  # type: ignore[arg-type]
        return slots

    def _slots_of(self, req: Req, start: int, end: int) -> torch.Tensor:
        return self.req_pool.read_host(req.row, start, end).clone()

    def cache_prefix(self, req: Req) -> None:
        """Insert the computed tokens into the tree and move the request's lock onto them, so
        requests arriving while this one decodes can share them."""
        if self.cache.disabled or req.kv_len <= req.tree_len:
            return
        ids = req.fill_ids[: req.kv_len]
        res = self.cache.insert(ids, self._slots_of(req, 0, req.kv_len))
        # Our slots for tokens another request inserted first are duplicates: free them and
        # point the table at the tree's copy.
        if res.already_cached_len > req.tree_len:
            self.allocator.free(self._slots_of(req, req.tree_len, res.already_cached_len))
        m = self.cache.match(ids)
        assert m.cached_len == len(ids), "freshly inserted tokens must match in full"
        self.req_pool.write(req.row, 0, m.slots)  # type: ignore[arg-type]
        self.cache.lock(m.handle)
        self.cache.unlock(req.handle)
        req.handle, req.tree_len = m.handle, req.kv_len

    def release(self, req: Req) -> None:
        """A finished or aborted request: its computed KV goes to the tree, its lock and row go."""
        if req.row is None:
            return
        if req.kv_len > req.fill_len:
            # A token still in flight (overlapped decode) has a slot but no token id yet.
            self.allocator.free(self._slots_of(req, req.fill_len, req.kv_len))
            req.kv_len = req.fill_len
        if req.kv_len > req.tree_len:
            res = self.cache.insert(req.fill_ids[: req.kv_len], self._slots_of(req, 0, req.kv_len))
            dup_end = min(res.already_cached_len, req.kv_len)
            if dup_end > req.tree_len:
                self.allocator.free(self._slots_of(req, req.tree_len, dup_end))
        self._drop(req)

    def retract(self, req: Req) -> None:
        """Take a running request's KV away (decode ran out of slots); it will re-prefill."""
        if req.row is None:
            return
        if req.kv_len > req.tree_len:
            self.allocator.free(self._slots_of(req, req.tree_len, req.kv_len))
        self._drop(req)

    def _drop(self, req: Req) -> None:
        self.cache.unlock(req.handle)
        self.req_pool.free(req.row)  # type: ignore[arg-type]
        req.row = req.handle = None
        req.tree_len = req.kv_len = req.extend_len = 0

    def check_integrity(self, active: Iterable[Req]) -> None:
        """free + evictable + locked-by-tree + owned-by-requests == num_slots, with no slot in
        two places."""
        self.cache.check_integrity()
        active = list(active)
        owned = sum(r.owned_slots for r in active if r.row is not None)
        total = (
            self.allocator.available + self.cache.evictable_size + self.cache.locked_size + owned
        )
        assert total == self.num_slots, (
            f"KV slots leaked or double-counted: free={self.allocator.available} "
            f"evictable={self.cache.evictable_size} locked={self.cache.locked_size} "
            f"owned={owned} != num_slots={self.num_slots}"
        )
        rows = [r.row for r in active if r.row is not None]
        assert len(rows) == len(set(rows)), "two requests share a req_to_token row"
        if owned:
            mine = torch.cat([self._slots_of(r, r.tree_len, r.kv_len) for r in active if r.row
                              is not None])
            assert mine.unique().numel() == mine.numel(), "a slot is owned by two requests"
