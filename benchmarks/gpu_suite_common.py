"""Helpers shared by the suite's phases (these run in the child processes; torch is fine here)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
from gpu_suite_plan import Context
from gpu_suite_roofline import ModelShape

DTYPE_BYTES = {"bfloat16": 2, "float16": 2, "float32": 4}
TORCH_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}
# Weights above this share of a GPU's memory leave no room for activations and a KV cache.
MAX_WEIGHT_SHARE = 0.9


class PhaseSkipped(Exception):
    """A phase that cannot run here (too little memory, too few GPUs): a 'skipped' row."""


def sync(device: str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def time_it(fn: Callable[[], Any], iters: int, device: str, warmup: int = 3) -> list[float]:
    """Seconds per call, one sample per call: CUDA events on a GPU, perf_counter elsewhere."""
    for _ in range(warmup):
        fn()
    sync(device)
    if torch.device(device).type != "cuda":
        out = []
        for _ in range(iters):
            t0 = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t0)
        return out
    events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
              for _ in range(iters)]
    for start, end in events:
        start.record()
        fn()
        end.record()
    torch.cuda.synchronize()
    return [start.elapsed_time(end) / 1e3 for start, end in events]


def kernel_seconds(fn: Callable[[], Any], cuda: bool) -> float:
    """Seconds per call of a kernel: on CUDA the median of triton's `do_bench`; on the CPU one
    call timed after one warm-up call (the micro-benchmarks' CPU runs only check they work)."""
    if cuda:
        from triton.testing import do_bench

        return float(do_bench(fn, warmup=25, rep=200, return_mode="median")) / 1e3
    fn()
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def shape_of(ctx: Context) -> ModelShape:
    return ModelShape.from_config(ctx.model_config)


def check_fits(ctx: Context, tp: int = 1) -> None:
    """Refuse (as a skip) a model whose weights cannot fit `tp` GPUs of this machine."""
    if torch.device(ctx.device).type != "cuda":
        return
    have = torch.cuda.device_count()
    if have < tp:
        raise PhaseSkipped(f"--tp {tp} needs {tp} GPUs; this machine has {have}")
    weights = shape_of(ctx).total_params * DTYPE_BYTES[ctx.dtype] / tp
    total = torch.cuda.get_device_properties(0).total_memory
    if weights > MAX_WEIGHT_SHARE * total:
        raise PhaseSkipped(
            f"{weights / 1e9:.0f} GB of {ctx.model_name} weights per GPU do not fit a "
            f"{total / 1e9:.0f} GB GPU at tp={tp}; use --tp"
        )


def free_cuda_memory() -> None:
    import gc

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def environment(device: str) -> dict[str, Any]:
    info: dict[str, Any] = {"torch": torch.__version__, "device": device}
    for mod in ("transformers", "triton"):
        try:
            info[mod] = __import__(mod).__version__
        except Exception as e:  # absent or broken: say so rather than fail the phase
            info[mod] = f"unavailable ({type(e).__name__})"
    if torch.device(device).type == "cuda":
        props = torch.cuda.get_device_properties(0)
        info.update(gpu=props.name, gpu_count=torch.cuda.device_count(),
                    gpu_memory_bytes=props.total_memory, cuda=torch.version.cuda)
    else:
        import platform

        info.update(gpu=None, cpu=platform.processor() or platform.machine())
    return info
