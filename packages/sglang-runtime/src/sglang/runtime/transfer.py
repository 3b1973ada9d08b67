"""Copies between host and device that never stall the host needlessly: host-to-device staged
in pinned memory and non-blocking; device-to-host into pinned memory, waited on through an
event (which releases the GIL, unlike `tensor.tolist()` on a CUDA tensor, which holds it while
the GPU finishes: the threads that stream outputs would stall behind every synchronous step)."""

from __future__ import annotations

from array import array
from collections.abc import Iterable
from itertools import chain

import torch


def host_int64(*columns: Iterable[int]) -> torch.Tensor:
    """The ints of `columns`, one after another, as one flat int64 host tensor. Built through an
    array: torch.tensor converts a list's ints one by one, at twice the cost."""
    flat = array("q", chain.from_iterable(columns))
    return torch.frombuffer(flat, dtype=torch.int64) if flat else torch.empty(0, dtype=torch.int64)


def to_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Host tensor `t` on `device` (itself when `device` is the CPU or `t` is there already).
    The copy is queued on the current stream, so kernels launched after it see the values
    without a host sync."""
    if device.type == "cpu" or t.device == device:
        return t
    return t.pin_memory().to(device, non_blocking=True)


def copy_to_host(t: torch.Tensor) -> tuple[torch.Tensor, torch.cuda.Event | None]:
    """Queue a copy of `t` into pinned host memory; (the copy, an event that fires when it is
    complete). On the CPU: (`t`, None)."""
    if not t.is_cuda:
        return t, None
    host = torch.empty(t.shape, dtype=t.dtype, pin_memory=True)
    host.copy_(t, non_blocking=True)
    ready = torch.cuda.Event()
    ready.record()
    return host, ready


def host_list(t: torch.Tensor) -> list:
    """`t.tolist()`, waiting for the device without holding the GIL."""
    host, ready = copy_to_host(t)
    if ready is not None:
        ready.synchronize()
    return host.tolist()
