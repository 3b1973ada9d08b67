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


def num_sms(device: torch.device) -> int:
    """Streaming multiprocessors of a CUDA device (a nominal 4 in the interpreter)."""
    if device.type != "cuda":
        return 4
    return _cuda_sms(device.index if device.index is not None else torch.cuda.current_device())


@functools.cache
def _cuda_sms(index: int) -> int:
    return torch.cuda.get_device_properties(index).multi_processor_count


@triton.jit
def soft_cap(x, cap):
    """cap * tanh(x / cap), via the sigmoid (tanh(y) = 2 sigmoid(2y) - 1), which every backend and
    the interpreter provide."""
    return cap * (2.0 * tl.sigmoid(2.0 * x / cap) - 1.0)
