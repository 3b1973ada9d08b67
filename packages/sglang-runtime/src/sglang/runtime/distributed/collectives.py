"""Collectives over the tensor-parallel group; each is the identity on one rank.

Tensor collectives run on the device group (inside CUDA graphs too, with NCCL). Byte and object
broadcasts run on the CPU group: a fixed-size first message carries small payloads in one
round trip (a scheduler step sends one), larger ones follow in a second.
"""

from __future__ import annotations

import pickle
from typing import Any

import torch

from sglang.runtime.distributed.parallel_state import get_tp_group

# First broadcast of `broadcast_bytes`: an 8-byte length, then up to this many payload bytes.
_INLINE_BYTES = 4096 - 8


def all_reduce(x: torch.Tensor) -> torch.Tensor:
    """Sum `x` over the ranks, in place; returns it."""
    group = get_tp_group()
    if group.size == 1:
        return x
    import torch.distributed as dist

    dist.all_reduce(x, group=group.device_group)
    return x


def all_gather(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Concatenate every rank's `x` along `dim`, in rank order."""
    group = get_tp_group()
    if group.size == 1:
        return x
    import torch.distributed as dist

    dim = dim % x.dim()
    # The backends gather along dim 0 into one flat [size * n, ...] tensor.
    out = torch.empty((group.size * x.shape[0], *x.shape[1:]), dtype=x.dtype, device=x.device)
    gather = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor
    gather(out, x.contiguous(), group=group.device_group)
    if dim == 0:
        return out
    # [size, ..., d, ...] -> [..., size * d, ...]
    out = out.view(group.size, *x.shape).movedim(0, dim)
    return out.reshape(*x.shape[:dim], -1, *x.shape[dim + 1 :])


def broadcast(x: torch.Tensor, src: int = 0) -> torch.Tensor:
    """Rank `src`'s `x` into every rank's `x`, in place, on the device group (no host sync
    on CUDA)."""
    group = get_tp_group()
    if group.size == 1:
        return x
    import torch.distributed as dist

    dist.broadcast(x, src=src, group=group.device_group)
    return x


def all_reduce_cpu(values: list[int], op: str = "sum") -> list[int]:
    """Reduce a few integers over the ranks (op: "sum", "min" or "max")."""
    group = get_tp_group()
    if group.size == 1:
        return list(values)
    import torch.distributed as dist

    ops = {"sum": dist.ReduceOp.SUM, "min": dist.ReduceOp.MIN, "max": dist.ReduceOp.MAX}
    t = torch.tensor(values, dtype=torch.int64)
    dist.all_reduce(t, op=ops[op], group=group.cpu_group)
    return [int(v) for v in t.tolist()]


def broadcast_bytes(data: bytes | None, src: int = 0) -> bytes:
    """`data` from rank `src` to every rank (others pass None)."""
    group = get_tp_group()
    if group.size == 1:
        return data or b""
    import torch.distributed as dist

    head = torch.zeros(8 + _INLINE_BYTES, dtype=torch.uint8)
    if group.rank == src:
        assert data is not None
        head[:8] = torch.tensor([len(data)], dtype=torch.int64).view(torch.uint8)
        inline = data[:_INLINE_BYTES]
        if inline:
            head[8 : 8 + len(inline)] = torch.frombuffer(bytearray(inline), dtype=torch.uint8)
    dist.broadcast(head, src=src, group=group.cpu_group)
    n = int(head[:8].view(torch.int64).item())
    if n <= _INLINE_BYTES:
        return data if group.rank == src else bytes(head[8 : 8 + n].numpy())  # type: ignore[return-value]
    rest = torch.empty(n - _INLINE_BYTES, dtype=torch.uint8)
    if group.rank == src:
        rest.copy_(torch.frombuffer(bytearray(data[_INLINE_BYTES:]), dtype=torch.uint8))  # type: ignore[index]
    dist.broadcast(rest, src=src, group=group.cpu_group)
    if group.rank == src:
        return data  # type: ignore[return-value]
    return bytes(head[8:].numpy()) + bytes(rest.numpy())


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """A picklable Python object from rank `src` to every rank. msgspec messages travel as
    their msgpack bytes through `broadcast_bytes` instead (no pickle)."""
    group = get_tp_group()
    if group.size == 1:
        return obj
    data = pickle.dumps(obj) if group.rank == src else None
    return pickle.loads(broadcast_bytes(data, src))


def all_gather_object(obj: Any) -> list[Any]:
    """Every rank's picklable `obj`, in rank order, on every rank."""
    group = get_tp_group()
    if group.size == 1:
        return [obj]
    import torch.distributed as dist

    out: list[Any] = [None] * group.size
    dist.all_gather_object(out, obj, group=group.cpu_group)
    return out
