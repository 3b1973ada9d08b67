"""Free list of KV-pool slots.

One slot holds one token's K/V. A scheduling step can allocate thousands of slots, so the free
list lives in a tensor and every operation is a handful of vectorised tensor ops, never a Python
loop per slot.
"""

from __future__ import annotations

import torch


class SlotAllocator:
    """Hands out slot indices ``0 .. num_slots - 1`` as int64 CPU tensors.

    ``_buf[_head:]`` holds the free slots. ``alloc`` takes from the front and ``free`` pushes back
    in front of ``_head``, so recently freed slots are reused first (their pages are warm) and a
    fresh allocator hands out slots in ascending order (easy to read in tests and logs).
    """

    def __init__(self, num_slots: int, debug: bool = False) -> None:
        if num_slots < 0:
            raise ValueError(f"num_slots must be >= 0, got {num_slots}")
        self._num_slots = num_slots
        self._buf = torch.arange(num_slots, dtype=torch.int64)
        self._head = 0
        # A per-slot flag makes double frees detectable in O(len(slots)) instead of a scan.
        self._is_free = torch.ones(num_slots, dtype=torch.bool)
        # Duplicate detection inside one free() call needs a sort; only pay for it when asked.
        self.debug = debug

    @property
    def num_slots(self) -> int:
        return self._num_slots

    @property
    def available(self) -> int:
        return self._num_slots - self._head

    def alloc(self, n: int) -> torch.Tensor | None:
        """Return ``n`` distinct free slots, or None (and change nothing) if fewer are free."""
        if n < 0:
            raise ValueError(f"cannot allocate {n} slots")
        if n > self.available:
            return None
        # Clone because the buffer region is overwritten by later frees.
        out = self._buf[self._head : self._head + n].clone()
        self._head += n
        self._is_free.index_fill_(0, out, False)
        return out

    def free(self, slots: torch.Tensor) -> None:
        """Return slots to the free list. Raises on out-of-range or already-free slots."""
        slots = slots.reshape(-1).to(device="cpu", dtype=torch.int64)
        k = slots.numel()
        if k == 0:
            return
        # Every verify step frees its rejected drafts' slots: one op per check, not two.
        low, high = torch.aminmax(slots)
        if int(low) < 0 or int(high) >= self._num_slots:
            raise ValueError(f"slot out of range [0, {self._num_slots}) in free()")
        if bool(self._is_free.index_select(0, slots).any()):
            bad = slots[self._is_free[slots]][:8].tolist()
            raise ValueError(f"double free of slots {bad}")
        if self.debug and torch.unique(slots).numel() != k:
            raise ValueError("free() got the same slot more than once")
        if k > self._head:
            # Only reachable with duplicates inside one call when debug is off.
            raise ValueError("free() would exceed num_slots; duplicate slots in the call?")
        self._head -= k
        self._buf[self._head : self._head + k] = slots
        self._is_free.index_fill_(0, slots, True)

    def is_free(self, slots: torch.Tensor) -> torch.Tensor:
        """Bool mask: which of ``slots`` are currently in the free list (debug checks)."""
        return self._is_free[slots.reshape(-1).to(device="cpu", dtype=torch.int64)]

    def free_slots(self) -> torch.Tensor:
        """A copy of the free list (debug and tests)."""
        return self._buf[self._head :].clone()

    def check(self, owned: torch.Tensor | None = None) -> None:
        """Assert the free list is consistent, and disjoint from ``owned`` if given."""
        free = self._buf[self._head :]
        assert torch.unique(free).numel() == free.numel(), "free list holds a slot twice"
        mask = torch.zeros(self._num_slots, dtype=torch.bool)
        mask[free] = True
        assert torch.equal(mask, self._is_free), "free flags disagree with the free list"
        if owned is not None and owned.numel() > 0:
            owned = owned.reshape(-1).to(device="cpu", dtype=torch.int64)
            assert not bool(mask[owned].any()), "an owned slot is also in the free list"

    def __repr__(self) -> str:
        return f"SlotAllocator(num_slots={self._num_slots}, available={self.available})"
