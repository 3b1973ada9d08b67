"""Tensor-parallel process groups on torch.distributed, and who this process is in them.

Every rank process calls `init_distributed` once before building its model. Two groups over the
same ranks: the device group carries activations (NCCL on CUDA, gloo on CPU) and the CPU group
(always gloo) carries control traffic — requests, token ids, integrity reports — so control never
waits behind, or syncs with, device work. Without `init_distributed` the process is rank 0 of 1
and every collective is a no-op (the in-process Engine with tp=1).
"""

from __future__ import annotations

import datetime
import logging
from dataclasses import dataclass
from typing import Any

import torch

logger = logging.getLogger("sglang.runtime")


@dataclass(frozen=True)
class TPGroup:
    rank: int
    size: int
    # None when this process never joined a process group (rank 0 of 1).
    device_group: Any = None
    cpu_group: Any = None

    @property
    def is_first(self) -> bool:
        return self.rank == 0


_SINGLE = TPGroup(rank=0, size=1)
_tp: TPGroup = _SINGLE


def get_tp_group() -> TPGroup:
    return _tp


def get_tp_rank() -> int:
    return _tp.rank


def get_tp_size() -> int:
    return _tp.size


def backend_for(device: torch.device) -> str:
    return "nccl" if device.type == "cuda" else "gloo"


def init_distributed(
    rank: int,
    world_size: int,
    init_addr: str,
    device: torch.device,
    timeout_s: float | None = None,
) -> TPGroup:
    """Join the tensor-parallel group of `world_size` ranks that meet at `init_addr`
    ("HOST:PORT", served by rank 0). One rank is allowed (NCCL included)."""
    import torch.distributed as dist

    global _tp
    if dist.is_initialized():
        raise RuntimeError("torch.distributed is already initialized in this process")
    if not 0 <= rank < world_size:
        raise ValueError(f"tp rank {rank} out of range for tp_size={world_size}")
    backend = backend_for(device)
    if backend == "nccl":
        torch.cuda.set_device(device)
    timeout = datetime.timedelta(seconds=timeout_s) if timeout_s else None
    dist.init_process_group(
        backend, init_method=f"tcp://{init_addr}", rank=rank, world_size=world_size,
        timeout=timeout,
        # NCCL: bind the communicator to this rank's GPU now rather than on first use.
        device_id=device if backend == "nccl" else None,
    )
    world = dist.group.WORLD
    cpu = dist.new_group(backend="gloo", timeout=timeout) if backend != "gloo" else world
    _tp = TPGroup(rank=rank, size=world_size, device_group=world, cpu_group=cpu)
    logger.info("tp rank %d/%d joined (%s at %s)", rank, world_size, backend, init_addr)
    return _tp


def destroy_distributed() -> None:
    import torch.distributed as dist

    global _tp
    if dist.is_initialized():
        dist.destroy_process_group()
    _tp = _SINGLE
