"""SlotAllocator and ReqToTokenPool."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sglang.runtime.cache import ReqToTokenPool, SlotAllocator


def test_fresh_allocator_hands_out_ascending_slots() -> None:
    a = SlotAllocator(10)
    assert a.num_slots == 10 and a.available == 10
    s = a.alloc(4)
    assert s is not None and s.dtype == torch.int64 and s.device.type == "cpu"
    assert s.tolist() == [0, 1, 2, 3]
    assert a.available == 6


def test_alloc_is_all_or_nothing() -> None:
    a = SlotAllocator(5)
    assert a.alloc(3) is not None
    assert a.alloc(3) is None
    assert a.available == 2, "a failed alloc must not take any slot"
    assert a.alloc(2) is not None
    assert a.alloc(1) is None


def test_alloc_zero_and_negative() -> None:
    a = SlotAllocator(3)
    z = a.alloc(0)
    assert z is not None and z.numel() == 0
    with pytest.raises(ValueError):
        a.alloc(-1)


def test_free_returns_slots_and_reuses_them() -> None:
    a = SlotAllocator(8)
    s = a.alloc(8)
    assert s is not None
    a.free(s[2:5])
    assert a.available == 3
    again = a.alloc(3)
    assert again is not None and sorted(again.tolist()) == [2, 3, 4]
    a.check(owned=torch.cat([s[:2], s[5:], again]))


def test_free_empty_is_noop() -> None:
    a = SlotAllocator(4)
    a.free(torch.empty(0, dtype=torch.int64))
    assert a.available == 4


def test_double_free_raises() -> None:
    a = SlotAllocator(4)
    s = a.alloc(2)
    assert s is not None
    a.free(s)
    with pytest.raises(ValueError, match="double free"):
        a.free(s[:1])
    with pytest.raises(ValueError, match="double free"):
        a.free(torch.tensor([3]))  # never allocated
    assert a.available == 4


def test_out_of_range_free_raises() -> None:
    a = SlotAllocator(4)
    a.alloc(4)
    with pytest.raises(ValueError, match="out of range"):
        a.free(torch.tensor([4]))
    with pytest.raises(ValueError, match="out of range"):
        a.free(torch.tensor([-1]))


def test_debug_mode_catches_duplicates_within_one_free() -> None:
    a = SlotAllocator(4, debug=True)
    a.alloc(4)
    with pytest.raises(ValueError, match="more than once"):
        a.free(torch.tensor([1, 1]))


def test_is_free_and_free_slots() -> None:
    a = SlotAllocator(4)
    s = a.alloc(2)
    assert s is not None
    assert a.is_free(torch.tensor([0, 1, 2, 3])).tolist() == [False, False, True, True]
    assert sorted(a.free_slots().tolist()) == [2, 3]


def test_large_alloc_free_round_trip() -> None:
    a = SlotAllocator(1_000_000)
    for _ in range(5):
        s = a.alloc(50_000)
        assert s is not None and s.unique().numel() == 50_000
        a.free(s)
    assert a.available == 1_000_000


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 12)), max_size=40))
def test_alloc_free_sequences_keep_partition(ops: list[tuple[bool, int]]) -> None:
    n = 24
    a = SlotAllocator(n)
    held: list[torch.Tensor] = []
    for is_alloc, k in ops:
        if is_alloc:
            before = a.available
            s = a.alloc(k)
            if k > before:
                assert s is None and a.available == before
            else:
                assert s is not None and s.numel() == k
                held.append(s)
        elif held:
            chunk = held.pop(k % len(held))
            a.free(chunk)
        owned = torch.cat(held) if held else torch.empty(0, dtype=torch.int64)
        assert torch.unique(owned).numel() == owned.numel(), "a slot was handed out twice"
        assert a.available + owned.numel() == n
        a.check(owned=owned)


# ---- ReqToTokenPool ------------------------------------------------------------------------------


def test_req_to_token_alloc_free_write() -> None:
    pool = ReqToTokenPool(3, 16, "cpu")
    assert pool.table.shape == (3, 16) and pool.table.dtype == torch.int64
    rows = [pool.alloc() for _ in range(3)]
    assert rows == [0, 1, 2] and pool.available == 0
    assert pool.alloc() is None
    pool.write(1, 4, torch.tensor([7, 8, 9]))
    assert pool.table[1, 4:7].tolist() == [7, 8, 9]
    assert pool.read(1, 7)[4:].tolist() == [7, 8, 9]
    pool.free(1)
    assert pool.available == 1 and pool.alloc() == 1


def test_req_to_token_errors() -> None:
    pool = ReqToTokenPool(2, 4, "cpu")
    row = pool.alloc()
    assert row is not None
    with pytest.raises(ValueError, match="max_context"):
        pool.write(row, 2, torch.tensor([1, 2, 3]))
    with pytest.raises(ValueError, match="unallocated"):
        pool.write(1, 0, torch.tensor([1]))
    pool.free(row)
    with pytest.raises(ValueError, match="double free"):
        pool.free(row)
    with pytest.raises(ValueError, match="out of range"):
        pool.free(5)
