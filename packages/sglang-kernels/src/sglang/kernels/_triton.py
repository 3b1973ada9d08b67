"""Shared launch helpers: device checks, block sizes and dot precision for the Triton kernels."""

from __future__ import annotations

import functools
import os

import torch
import triton
import triton.language as tl


def interpreting() -> bool:
    """True when Triton runs kernels in its CPU interpreter (``TRITON_INTERPRET=1``)."""
    return os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "on", "yes")


def can_launch(t: torch.Tensor) -> bool:
    """Whether the kernels can run on `t`'s device: CUDA, or any device in the interpreter."""
    return t.is_cuda or interpreting()


def check_device(*tensors: torch.Tensor) -> None:
    """Fail clearly instead of inside Triton's launcher when a tensor cannot be launched on."""
    if interpreting():
        return
    for t in tensors:
        if not t.is_cuda:
            raise RuntimeError(
                f"sglang.kernels needs CUDA tensors (got one on {t.device}); on CPU run the kernels "
                "in Triton's interpreter by setting TRITON_INTERPRET=1 before triton is imported"
            )


def next_pow2(n: int, minimum: int = 1) -> int:
    return max(triton.next_power_of_2(int(n)), minimum)


def dot_precision(dtype: torch.dtype) -> str:
    """fp32 inputs use exact fp32 products: tf32 (Triton's default on CUDA) keeps 10 mantissa
    bits, far from what the float32 torch reference computes."""
    return "ieee" if dtype == torch.float32 else "tf32"


FP8_DTYPES = (torch.float8_e4m3fn, torch.float8_e5m2)


def kv_compute_dtype(
    q: torch.Tensor, k_buffer: torch.Tensor, v_buffer: torch.Tensor
) -> tuple[bool, torch.dtype]:
    """(whether the KV pool is fp8, the dtype its tiles are used in): an fp8 pool's tiles are
    widened to the query's dtype, any other pool's are used as stored."""
    if k_buffer.dtype != v_buffer.dtype:
        raise ValueError(f"k_buffer is {k_buffer.dtype} but v_buffer {v_buffer.dtype}")
    if k_buffer.dtype in FP8_DTYPES:
        return True, q.dtype
    return False, k_buffer.dtype


def num_sms(device: torch.device) -> int:
    """Streaming multiprocessors of a CUDA device (a nominal 4 in the interpreter)."""
    if device.type != "cuda":
        return 4
    return _cuda_sms(device.index if device.index is not None else torch.cuda.current_device())


@functools.cache
def _cuda_sms(index: int) -> int:
    return torch.cuda.get_device_properties(index).multi_processor_count


@functools.cache
def _cuda_major(index: int) -> int:
    return torch.cuda.get_device_capability(index)[0]


def pdl_args(t: torch.Tensor) -> dict[str, bool]:
    """Launch arguments for programmatic dependent launch (Hopper and newer): the kernel may be
    scheduled while the previous one in the stream still runs, and waits for it with
    `pdl_enter` before touching memory that kernel could have written. Between small decode
    kernels this hides the launch latency and lets a GEMV stream its weights during the
    previous kernel's tail. Off in the interpreter, before sm90, or with
    ``SGLANG_KERNELS_PDL=0``."""
    on = (
        t.is_cuda
        and not interpreting()
        and os.environ.get("SGLANG_KERNELS_PDL", "1") != "0"
        and _cuda_major(t.device.index if t.device.index is not None else 0) >= 9
    )
    return {"USE_PDL": True, "launch_pdl": True} if on else {"USE_PDL": False}


@triton.jit
def pdl_release():
    """Let the next kernel in the stream be scheduled (it still waits for this one to finish
    before it reads anything, in its `pdl_wait`)."""
    tl.extra.cuda.gdc_launch_dependents()


@triton.jit
def pdl_wait():
    """Block until the previous kernel in the stream has finished and its writes are visible."""
    tl.extra.cuda.gdc_wait()


@triton.jit
def pdl_enter(USE_PDL: tl.constexpr):
    """Start of a kernel launched with `pdl_args`: release the next kernel, then wait for the
    previous one. Every such kernel must call it (or `pdl_wait`) before its first read of
    another kernel's output and before its first write, so kernels stay ordered transitively."""
    if USE_PDL:
        pdl_release()
        pdl_wait()


@triton.jit
def soft_cap(x, cap):
    """cap * tanh(x / cap), via the sigmoid (tanh(y) = 2 sigmoid(2y) - 1), which every backend and
    the interpreter provide."""
    return cap * (2.0 * tl.sigmoid(2.0 * x / cap) - 1.0)
