"""The hardware phases (ceilings, all-reduce latency), the kernel micro-benchmarks, and the
registry of every phase's runner. Imported only by the suite's child processes."""

from __future__ import annotations

import inspect
import json
import os
import socket
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from gpu_suite_common import PhaseSkipped, environment, median, time_it
from gpu_suite_plan import Context


# ---- ceilings ------------------------------------------------------------------------------
def _bandwidth(ctx: Context) -> dict[str, Any]:
    s, dev = ctx.sizes, ctx.device
    src = torch.ones(s.copy_mib * 2**20 // 2, dtype=torch.bfloat16, device=dev)
    dst = torch.empty_like(src)
    nbytes = src.numel() * src.element_size()
    copy_t = time_it(lambda: dst.copy_(src), s.timing_iters, dev)
    # Read-only streaming, for reference: decode mostly reads weights.
    read_t = time_it(lambda: torch.sum(src, dtype=torch.float32), s.timing_iters, dev)
    return {
        "copy": {"bytes_moved": 2 * nbytes, "tensor_bytes": nbytes, "median_s": median(copy_t),
                 "bandwidth": 2 * nbytes / median(copy_t), "samples_s": copy_t},
        "read": {"bytes": nbytes, "median_s": median(read_t), "bandwidth": nbytes / median(read_t)},
    }


def _matmul(ctx: Context) -> dict[str, Any]:
    m, dev = ctx.sizes.gemm_n, ctx.device
    a = torch.randn(m, m, dtype=torch.bfloat16, device=dev)
    b = torch.randn(m, m, dtype=torch.bfloat16, device=dev)
    c = torch.empty(m, m, dtype=torch.bfloat16, device=dev)
    mm_t = time_it(lambda: torch.matmul(a, b, out=c), ctx.sizes.timing_iters, dev)
    return {"n": m, "flops": 2.0 * m**3, "median_s": median(mm_t),
            "rate": 2.0 * m**3 / median(mm_t), "samples_s": mm_t}


def run_ceilings(ctx: Context) -> dict[str, Any]:
    """Copy bandwidth (bytes read + written) and bf16 GEMM rate, median of CUDA-event timings;
    each measurement's tensors are freed before the next allocates."""
    return {"environment": environment(ctx.device), **_bandwidth(ctx), "matmul": _matmul(ctx)}


# ---- kernels -------------------------------------------------------------------------------
KERNEL_BENCHES = ("bench_decode_attention", "bench_extend_attention")


def run_kernels(ctx: Context) -> dict[str, Any]:
    """Rows from benchmarks/kernel_micro.py (written separately); each bench fails alone."""
    try:
        import kernel_micro
    except ModuleNotFoundError as e:
        if e.name != "kernel_micro":
            raise
        reason = "skipped: benchmarks/kernel_micro.py does not exist yet"
        return {name: {"skipped": reason} for name in KERNEL_BENCHES}
    rows: dict[str, Any] = {}
    for name in KERNEL_BENCHES:
        fn: Callable[[str], dict] | None = getattr(kernel_micro, name, None)
        if fn is None:
            rows[name] = {"skipped": f"skipped: kernel_micro has no {name}"}
            continue
        kwargs: dict[str, Any] = {}
        if "copy_gbps" in inspect.signature(fn).parameters and "copy_bandwidth" in ctx.measured:
            kwargs["copy_gbps"] = ctx.measured["copy_bandwidth"] / 1e9  # this run's ceiling
        try:
            t0 = time.perf_counter()
            # Round-trip through JSON so whatever the bench returns can be written out.
            rows[name] = json.loads(json.dumps(fn(ctx.device, **kwargs), default=str))
            rows[name].setdefault("bench_s", time.perf_counter() - t0)
        except Exception as e:
            if torch.device(ctx.device).type == "cpu":  # the benches are CUDA-only
                rows[name] = {"skipped": f"skipped on the CPU: {type(e).__name__}: {e}"}
                continue
            traceback.print_exc()
            rows[name] = {"error": f"{type(e).__name__}: {e}",
                          "traceback": traceback.format_exc()[-2000:]}
    return rows


# ---- all-reduce latency (tp) ----------------------------------------------------------------
ALLREDUCE_BATCHES = (1, 64, 256)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _allreduce_worker(rank: int, world: int, port: int, device: str, hidden: int, iters: int,
                      out_file: str) -> None:
    import torch.distributed as dist

    cuda = torch.device(device).type == "cuda"
    if cuda:
        torch.cuda.set_device(rank)
    dist.init_process_group("nccl" if cuda else "gloo", init_method=f"tcp://127.0.0.1:{port}",
                            rank=rank, world_size=world)
    dev = torch.device("cuda", rank) if cuda else torch.device("cpu")
    dtype = torch.bfloat16 if cuda else torch.float32  # gloo lacks bf16 sums
    result: dict[str, Any] = {}
    for batch in ALLREDUCE_BATCHES:
        x = torch.ones(batch, hidden, dtype=dtype, device=dev)
        for _ in range(10):
            dist.all_reduce(x)
        if cuda:
            torch.cuda.synchronize()
        dist.barrier()
        t0 = time.perf_counter()
        for _ in range(iters):
            dist.all_reduce(x)
        if cuda:
            torch.cuda.synchronize()
        result[str(batch)] = (time.perf_counter() - t0) / iters
    if rank == 0:
        Path(out_file).write_text(json.dumps(result))
    dist.barrier()
    dist.destroy_process_group()


def run_allreduce(ctx: Context) -> dict[str, Any]:
    """Back-to-back all-reduces of a [batch, hidden] activation over --tp processes: the cost
    each tensor-parallel layer pays twice per step."""
    import torch.multiprocessing as mp

    cuda = torch.device(ctx.device).type == "cuda"
    if cuda and torch.cuda.device_count() < ctx.tp:
        raise PhaseSkipped(f"--tp {ctx.tp} needs {ctx.tp} GPUs; this machine has "
                           f"{torch.cuda.device_count()}")
    hidden = int(ctx.model_config["hidden_size"])
    out_file = os.path.join(ctx.results_dir, "allreduce_raw.json")
    mp.spawn(_allreduce_worker, nprocs=ctx.tp, join=True,
             args=(ctx.tp, _free_port(), ctx.device, hidden, ctx.sizes.allreduce_iters, out_file))
    per_batch = json.loads(Path(out_file).read_text())
    return {"tp": ctx.tp, "hidden": hidden, "backend": "nccl" if cuda else "gloo",
            "seconds_per_allreduce": per_batch, "latency_s": per_batch["1"]}


# ---- structured output -----------------------------------------------------------------------
def run_grammar(ctx: Context) -> dict[str, Any]:
    """benchmarks/grammar_bench.py in a subprocess (it builds its own Engine): JSON-schema
    decoding with and without jump-forward, and the masks' cost per decode step. On a GPU it
    needs --grammar-model; the dry run uses the embedded SmolLM2 on the CPU."""
    out = os.path.join(ctx.results_dir, "grammar_raw.json")
    cmd = [sys.executable, str(Path(__file__).with_name("grammar_bench.py")),
           "--device", ctx.device, "--out", out]
    if ctx.grammar_model:
        cmd += ["--model-path", ctx.grammar_model, "--load-format", "dummy", "--dtype", ctx.dtype]
    elif ctx.device != "cpu":
        raise PhaseSkipped("needs --grammar-model DIR (a config.json and tokenizer files)")
    if ctx.mode == "dry":
        cmd += ["--num-requests", "4", "--free-tokens", "8", "--repeats", "1"]
    subprocess.run(cmd, check=True)
    return json.loads(Path(out).read_text())


def runners() -> dict[str, Callable[[Context], dict[str, Any]]]:
    import gpu_suite_engine
    import gpu_suite_hf

    return {"ceilings": run_ceilings, "kernels": run_kernels, "allreduce": run_allreduce,
            "grammar": run_grammar,
            **gpu_suite_engine.RUNNERS, **gpu_suite_hf.RUNNERS}
