"""Tensor parallelism on torch.distributed: process groups, rank accessors, collectives."""

from sglang.runtime.distributed.collectives import (
    all_gather,
    all_gather_object,
    all_reduce,
    all_reduce_cpu,
    broadcast,
    broadcast_bytes,
    broadcast_object,
)
from sglang.runtime.distributed.parallel_state import (
    TPGroup,
    destroy_distributed,
    get_tp_group,
    get_tp_rank,
    get_tp_size,
    init_distributed,
)

__all__ = [
    "TPGroup",
    "all_gather",
    "all_gather_object",
    "all_reduce",
    "all_reduce_cpu",
    "broadcast",
    "broadcast_bytes",
    "broadcast_object",
    "destroy_distributed",
    "get_tp_group",
    "get_tp_rank",
    "get_tp_size",
    "init_distributed",
]
