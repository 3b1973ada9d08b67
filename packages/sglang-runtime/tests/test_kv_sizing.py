"""The KV pool's size on CUDA comes from --mem-fraction-static; a model that leaves no room for
it fails with an error naming the setting. The device memory query is faked, so this runs on
CPU."""

from __future__ import annotations

import pytest
import torch

from sglang.runtime.builder import _kv_slots
from sglang.runtime.config import RuntimeArgs

GIB = 2**30


def _fake_memory(monkeypatch: pytest.MonkeyPatch, free: float, total: float) -> None:
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (int(free), int(total)))


def test_pool_is_sized_from_the_memory_fraction(monkeypatch) -> None:
    _fake_memory(monkeypatch, free=60 * GIB, total=80 * GIB)  # 20 GiB of weights loaded
    small = _kv_slots(RuntimeArgs(mem_fraction_static=0.5), torch.device("cuda"), 131072)
    large = _kv_slots(RuntimeArgs(mem_fraction_static=0.9), torch.device("cuda"), 131072)
    assert 0 < small < large
    # 0.4 of 80 GiB more for the pool: the difference is that many bytes of slots.
    assert (large - small) * 131072 == pytest.approx(0.4 * 80 * GIB, rel=1e-3)


def test_model_that_leaves_no_room_is_a_clear_error(monkeypatch) -> None:
    _fake_memory(monkeypatch, free=2 * GIB, total=80 * GIB)
    with pytest.raises(MemoryError, match="mem_fraction_static=0.85"):
        _kv_slots(RuntimeArgs(), torch.device("cuda"), 131072)
