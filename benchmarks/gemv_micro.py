"""Batch-1 linear layers of Llama-3-8B on CUDA: cuBLAS against the Triton GEMV of sglang-kernels.

With ``--sweep``, part 1 sweeps the GEMV's launch shapes per weight shape (each timed alone, L2
flushed between calls by `do_bench`) and prints the best against cuBLAS in achieved weight
bandwidth. Then the default launch shapes at 1-8 rows against cuBLAS. Last, it times what a
decode step actually runs: the linear layers of all 32 layers (distinct weights,
so nothing stays in L2) plus the LM head, captured in one CUDA graph, in three versions:

- ``cublas``: rmsnorm(+residual) / F.linear / silu_and_mul kernels, as the model runs them;
- ``gemv``: the same with every F.linear replaced by the GEMV;

each also with programmatic dependent launch of the Triton kernels (``+pdl``).

    python3 benchmarks/gemv_micro.py [--json out.json] [--sweep [--quick]]
"""

from __future__ import annotations

import argparse
import itertools
import json
import multiprocessing as mp
import statistics

import torch
import torch.nn.functional as F

SHAPES = {  # name: (out_features N, in_features K)
    "qkv": (6144, 4096),
    "o": (4096, 4096),
    "gate_up": (28672, 4096),
    "down": (4096, 14336),
    "lm_head": (128256, 4096),
}
LAYERS = 32
HIDDEN = 4096


def configs(quick: bool) -> list[tuple[int, int, int, int]]:
    grid = itertools.product((1, 2, 4, 8), (1024, 2048, 4096), (2, 4, 8), (1, 2))
    out = [c for c in grid if c[0] * c[1] / (32 * c[2]) <= 128]  # fp32 products per thread
    return out[::4] if quick else out


def _inputs(n: int, k: int, rows: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.randn(rows, k, device="cuda", dtype=torch.bfloat16)
    w = torch.randn(n, k, device="cuda", dtype=torch.bfloat16) * 0.02
    return x, w


def _gemv(x: torch.Tensor, w: torch.Tensor, cfg: tuple | None = None):  # noqa: ANN202
    from sglang.kernels import GemvConfig, gemv

    return gemv(x, w, config=GemvConfig(*cfg) if cfg else None)


def _compile_worker(jobs: list[tuple[tuple[int, int, int, int], int]]) -> None:
    # Compiles into Triton's on-disk cache, so the timing process only loads binaries.
    for cfg, k in jobs:
        try:
            _gemv(*_inputs(64, k), cfg)
        except Exception:  # noqa: BLE001 - a config that does not compile is skipped later
            pass
    torch.cuda.synchronize()


def precompile(jobs: list, procs: int = 12) -> None:
    chunks = [jobs[i::procs] for i in range(procs)]
    with mp.get_context("spawn").Pool(procs) as pool:
        pool.map(_compile_worker, chunks)


def bench(fn) -> float:  # noqa: ANN001
    import triton.testing

    return triton.testing.do_bench(fn, warmup=10, rep=40, return_mode="median") * 1e3  # us


def sweep(quick: bool) -> dict:
    cfgs = configs(quick)
    precompile([(c, k) for c in cfgs for k in {k for _, k in SHAPES.values()}])
    results: dict = {}
    for name, (n, k) in SHAPES.items():
        x, w = _inputs(n, k)
        gb = w.numel() * 2 / 1e9
        ref = F.linear(x, w).float()
        t_cublas = bench(lambda: F.linear(x, w))  # noqa: B023 - called right here
        timed = []
        for cfg in cfgs:
            try:
                err = ((_gemv(x, w, cfg).float() - ref).norm() / ref.norm()).item()
                if not err < 1e-2:
                    print(f"  {name} {cfg}: wrong (rel err {err:.1e})")
                    continue
                timed.append((bench(lambda: _gemv(x, w, cfg)), cfg))  # noqa: B023
            except Exception as e:  # noqa: BLE001
                print(f"  {name} {cfg}: failed {type(e).__name__}")
        timed.sort()
        best_t, best_cfg = timed[0]
        results[name] = {"n": n, "k": k, "weight_gb": gb, "cublas_us": t_cublas,
                         "gemv_us": best_t, "gemv_cfg": best_cfg, "top": timed[:8]}
        print(f"{name:8s} cuBLAS {t_cublas:7.1f} us {gb / t_cublas * 1e6:5.0f} GB/s | gemv "
              f"{best_t:7.1f} us {gb / best_t * 1e6:5.0f} GB/s {best_cfg}", flush=True)
    return results


def rows_table() -> dict:
    """Default launch shapes at 1-8 rows against cuBLAS, per weight shape."""
    out: dict = {}
    for rows in (1, 2, 4, 8):
        for name, (n, k) in SHAPES.items():
            x, w = _inputs(n, k, rows)
            t_cublas = bench(lambda: F.linear(x, w))  # noqa: B023 - called right here
            t_gemv = bench(lambda: _gemv(x, w))  # noqa: B023
            out[f"{name}@{rows}"] = {"cublas_us": t_cublas, "gemv_us": t_gemv}
            print(f"rows={rows} {name:8s} cuBLAS {t_cublas:7.1f} us | gemv {t_gemv:7.1f} us "
                  f"({t_cublas / t_gemv:.2f}x)", flush=True)
    return out


def chain(best: dict | None) -> dict:
    """The linear layers of a whole decode step, in one CUDA graph per version."""
    import os

    import sglang.kernels as K

    dt = torch.bfloat16
    cfg = {name: (tuple(r["gemv_cfg"]) if best else None) for name, r in (best or SHAPES).items()}
    layers = [{name: torch.randn(n, k, device="cuda", dtype=dt) * 0.02
               for name, (n, k) in SHAPES.items() if name != "lm_head"} for _ in range(LAYERS)]
    lm_head = torch.randn(*SHAPES["lm_head"], device="cuda", dtype=dt) * 0.02
    nw = torch.rand(HIDDEN, device="cuda", dtype=dt) + 0.5
    h0 = torch.randn(1, HIDDEN, device="cuda", dtype=dt)

    def step(use_gemv: bool) -> torch.Tensor:
        def linear(name: str, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
            return _gemv(x, w, cfg[name]) if use_gemv else F.linear(x, w)

        x, res = K.rmsnorm(h0, nw, 1e-5), h0.clone()
        for lw in layers:
            qkv = linear("qkv", x, lw["qkv"])
            o = linear("o", qkv[:, :HIDDEN], lw["o"])
            x, res = K.rmsnorm(o, nw, 1e-5, res)
            gu = linear("gate_up", x, lw["gate_up"])
            d = linear("down", K.silu_and_mul(gu), lw["down"])
            x, res = K.rmsnorm(d, nw, 1e-5, res)
        return linear("lm_head", x, lm_head)

    versions = {  # name: (GEMV instead of cuBLAS, programmatic dependent launch)
        "cublas": (False, "0"), "cublas+pdl": (False, "1"), "gemv": (True, "0"),
        "gemv+pdl": (True, "1"),
    }
    gb = (sum(w.numel() for w in layers[0].values()) * LAYERS + lm_head.numel()) * 2 / 1e9
    out: dict = {}
    logits = {}
    for name, (use_gemv, pdl) in versions.items():
        os.environ["SGLANG_KERNELS_PDL"] = pdl
        step(use_gemv)
        torch.cuda.synchronize()
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g):
            logits[name] = step(use_gemv)
        times = []
        for _ in range(30):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            g.replay()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) * 1e3)
        med = statistics.median(times[5:])
        ref = logits["cublas"].float()
        err = ((logits[name].float() - ref).norm() / ref.norm()).item()
        out[name] = {"us": med, "gb_per_s": gb / med * 1e6, "rel_err_vs_cublas": err}
        print(f"chain {name:10s} {med / 1e3:6.3f} ms  {gb / med * 1e6:6.0f} GB/s of weights  "
              f"logits rel err vs cublas {err:.1e}", flush=True)
    os.environ.pop("SGLANG_KERNELS_PDL")
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--json")
    p.add_argument("--sweep", action="store_true", help="sweep launch shapes (else defaults)")
    p.add_argument("--quick", action="store_true", help="a quarter of the sweep")
    args = p.parse_args()
    torch.manual_seed(0)
    best = sweep(args.quick) if args.sweep else None
    result = {"device": torch.cuda.get_device_name(), "sweep": best, "rows": rows_table(),
              "chain": chain(best)}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
