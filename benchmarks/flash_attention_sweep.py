"""`flash_attention` launch shapes against torch's FlashAttention-2 varlen and SDPA (cuDNN) on
three causal workloads, Llama-3-8B heads, bf16 (CUDA).

Workloads: a plain prefill of 4 x 2048 tokens; 4 x 512 new tokens over 1536 cached ones; a
ragged batch of six requests. SDPA runs on the equal-length ones only (dense, K/V expanded to
every query head, so its fastest kernel applies). Each launch is checked against torch's
kernel before it is timed (`triton.testing.do_bench`, median ms).

    python3 benchmarks/flash_attention_sweep.py [--budget-s 300] [--out sweep.json]
"""

from __future__ import annotations

import argparse
import functools
import json
import time
from dataclasses import asdict

import torch
import torch.nn.functional as F
import triton
from torch.nn.attention.bias import causal_lower_right

import sglang.kernels as K
from sglang.kernels.attention.flash import FlashLaunch

HEADS, KV_HEADS, DIM, DTYPE = 32, 8, 128, torch.bfloat16
# name -> (new tokens per request, keys per request)
CASES = {
    "prefill_4x2048": ([2048] * 4, [2048] * 4),
    "prefix_4x(1536+512)": ([512] * 4, [2048] * 4),
    "ragged": ([37, 500, 2048, 1200, 3000, 9], [37, 700, 2048, 1300, 3000, 100]),
}
L = FlashLaunch
LAUNCHES = [L(64, 64, 4, 3, True), L(64, 64, 4, 3, True, 2), L(64, 64, 4, 3, True, 4),
            L(128, 64, 8, 3, True), L(128, 64, 8, 3, True, 4), L(128, 128, 8, 3, True, 4),
            L(128, 64, 4, 2, True), L(128, 64, 4, 2, True, 4), L(256, 64, 8, 3, True, 4),
            L(64, 32, 4, 3, True, 4), L(64, 64, 4, 3), L(128, 64, 8, 4)]


def bench(fn) -> float:  # noqa: ANN001
    return triton.testing.do_bench(fn, warmup=10, rep=60)


def make(q_lens: list[int], k_lens: list[int]) -> tuple:
    g = torch.Generator(device="cuda").manual_seed(0)
    q = torch.randn(sum(q_lens), HEADS, DIM, dtype=DTYPE, device="cuda", generator=g)
    k = torch.randn(sum(k_lens), KV_HEADS, DIM, dtype=DTYPE, device="cuda", generator=g)
    v = torch.randn(sum(k_lens), KV_HEADS, DIM, dtype=DTYPE, device="cuda", generator=g)
    cu_q = K.cumulative_lengths(torch.tensor(q_lens, device="cuda"))
    cu_k = K.cumulative_lengths(torch.tensor(k_lens, device="cuda"))
    return q, k, v, cu_q, cu_k, max(q_lens), max(k_lens)


def causal_flops(q_lens: list[int], k_lens: list[int]) -> float:
    visible = sum(ql * (kl - ql) + ql * (ql + 1) // 2 for ql, kl in zip(q_lens, k_lens))
    return 4.0 * visible * HEADS * DIM


def baselines(name: str, case: tuple) -> tuple[dict, torch.Tensor]:
    q, k, v, cu_q, cu_k, max_q, max_k = case

    def torch_flash() -> torch.Tensor:
        return torch.ops.aten._flash_attention_forward(
            q, k, v, cu_q, cu_k, max_q, max_k, 0.0, True, False, scale=DIM**-0.5)[0]

    row = {"torch_flash_ms": bench(torch_flash)}
    q_lens, k_lens = CASES[name]
    if len(set(q_lens)) == 1 and len(set(k_lens)) == 1:
        b, new, seq = len(q_lens), q_lens[0], k_lens[0]
        qs = q.view(b, new, HEADS, DIM).transpose(1, 2).contiguous()

        def dense(x: torch.Tensor) -> torch.Tensor:
            x = x.view(b, seq, KV_HEADS, DIM).transpose(1, 2)
            return x.repeat_interleave(HEADS // KV_HEADS, 1).contiguous()

        ks, vs = dense(k), dense(v)
        mask = causal_lower_right(new, seq) if seq > new else None
        row["sdpa_ms"] = bench(lambda: F.scaled_dot_product_attention(
            qs, ks, vs, attn_mask=mask, is_causal=mask is None))
    return row, torch_flash().float()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--budget-s", type=float, default=300.0, help="stop sweeping after this")
    p.add_argument("--out", default=None)
    args = p.parse_args()
    start = time.time()
    cases = {name: make(*lens) for name, lens in CASES.items()}
    result: dict = {"device": torch.cuda.get_device_name(), "cases": {}, "sweep": []}
    wants = {}
    for name, case in cases.items():
        row, wants[name] = baselines(name, case)
        row["flops"] = causal_flops(*CASES[name])
        result["cases"][name] = row
        print(name, json.dumps(row), flush=True)
    for launch in LAUNCHES:
        if time.time() - start > args.budget_s:
            print("budget reached", flush=True)
            break
        entry: dict = {"launch": asdict(launch)}
        try:
            for name, (q, k, v, cu_q, cu_k, max_q, _) in cases.items():
                out = K.flash_attention(q, k, v, cu_q, cu_k, max_q, sm_scale=DIM**-0.5,
                                        launch=launch)
                err = (out.float() - wants[name]).abs().max().item()
                ms = bench(functools.partial(K.flash_attention, q, k, v, cu_q, cu_k, max_q,
                                             sm_scale=DIM**-0.5, launch=launch, out=out))
                entry[name] = {"ms": ms, "max_abs_diff_vs_torch": err,
                               "TFLOPs": result["cases"][name]["flops"] / ms / 1e9}
        except (triton.runtime.errors.OutOfResources, triton.CompilationError,
                RuntimeError) as e:
            entry["error"] = f"{type(e).__name__}: {str(e)[:200]}"
        result["sweep"].append(entry)
        print(json.dumps(entry), flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
