"""How tensor parallelism splits checkpoint tensors: the geometry, not the I/O.

A layer describes, per checkpoint tensor, which slice this rank keeps and where it goes
(`ShardSpec`); the loaders (`models/weight_utils.py`, `loading/dummy.py`) do the reading, so a
rank reads only its slice of a safetensors file.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class ShardSpec:
    """This rank's part of one checkpoint tensor: `dest` receives `tensor.narrow(dim, start,
    size)`, or the whole tensor when `dim` is None. `full` is the checkpoint's length along
    `dim`, checked so a mismatched checkpoint fails loudly instead of loading a wrong slice.
    `load`, when set, reads the slice itself instead (`load(tensor, spec)`): GGUF blocks kept
    packed never become float, and `dest` is then a meta tensor of the float shape."""

    dest: torch.Tensor
    dim: int | None = None
    start: int = 0
    size: int = 0
    full: int = 0
    load: Callable[[Any, ShardSpec], None] | None = None

    @property
    def checkpoint_shape(self) -> tuple[int, ...]:
        shape = list(self.dest.shape)
        if self.dim is not None:
            shape[self.dim] = self.full
        return tuple(shape)


def even_range(total: int, parts: int, index: int) -> tuple[int, int]:
    """(start, size) of part `index` when `total` items split into `parts` contiguous parts
    whose sizes differ by at most one (the first ones take the extra items)."""
    base, extra = divmod(total, parts)
    return index * base + min(index, extra), base + (index < extra)


@dataclass(frozen=True)
class HeadSplit:
    """Which attention heads a rank holds: whole groups of query heads with the KV head they
    share, so grouped-query attention stays uniform on every rank.

    With at least as many KV heads as ranks, each rank takes a contiguous run of KV heads
    (as even as possible: SmolLM2's 3 KV heads over 2 ranks go 2 + 1) and their query heads.
    With fewer, each KV head is replicated on tp_size / num_kv_heads ranks, which split its
    query heads. Uneven splits balance the work less well but compute the same model.
    """

    num_heads: int  # local query heads
    num_kv_heads: int  # local KV heads
    q_start: int  # first local query head
    kv_start: int  # first local KV head

    @classmethod
    def of(cls, num_heads: int, num_kv_heads: int, tp_rank: int, tp_size: int) -> HeadSplit:
        if num_heads % num_kv_heads:
            raise ValueError(f"num_attention_heads={num_heads} is not a multiple of "
                             f"num_key_value_heads={num_kv_heads}")
        group = num_heads // num_kv_heads
        if tp_size <= num_kv_heads:
            kv_start, kv = even_range(num_kv_heads, tp_size, tp_rank)
            return cls(kv * group, kv, kv_start * group, kv_start)
        if tp_size % num_kv_heads or tp_size > num_heads:
            raise ValueError(
                f"tp_size={tp_size} exceeds num_key_value_heads={num_kv_heads}, so KV heads are "
                "replicated, which needs tp_size to be a multiple of it and at most "
                f"num_attention_heads={num_heads}"
            )
        replicas = tp_size // num_kv_heads
        kv_head = tp_rank // replicas
        offset, heads = even_range(group, replicas, tp_rank % replicas)
        return cls(heads, 1, kv_head * group + offset, kv_head)
