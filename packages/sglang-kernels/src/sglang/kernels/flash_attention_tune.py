"""Measure `flash_attention`'s launch shapes on this GPU against torch's FlashAttention-2 and
write the table it reads.

For one head layout (query heads, KV heads, head dim, dtype) every candidate `FlashLaunch` and
torch's varlen kernel are timed (`triton.testing.do_bench`, median) on two causal workloads: a
plain prefill of 4 x 2048 tokens, and 4 x 512 new tokens over 1536 cached ones. The launch with
the smallest summed time is stored with that time and torch's (``"ms"``, ``"torch_flash_ms"``);
`varlen_extend_attention` runs our kernel only where ``ms`` is the smaller.

    python -m sglang.kernels.flash_attention_tune --out DIR            # Llama-3-8B heads, bf16
    python -m sglang.kernels.flash_attention_tune --heads 64 --kv-heads 8 --out DIR
    # then: SGLANG_KERNEL_TUNING_DIR=DIR to use it, or copy DIR/*.json into sglang/kernels/tuned/
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
from dataclasses import asdict
from pathlib import Path

import torch
import triton

from sglang.kernels import tuning
from sglang.kernels.attention.flash import TUNING_KERNEL, FlashLaunch, flash_attention, tuning_key
from sglang.kernels.attention.varlen import cumulative_lengths

# (new tokens, keys) per request, 4 requests each
WORKLOADS = {"prefill_4x2048": (2048, 2048), "prefix_4x(1536+512)": (512, 2048)}
REQUESTS = 4
# (block_m, block_n, warps, stages): the region that won on the H200, and its neighbours.
SHAPES = [(64, 64, 4, 2), (64, 64, 4, 3), (128, 64, 4, 2), (128, 64, 8, 3), (128, 64, 8, 4),
          (128, 128, 8, 2), (128, 128, 8, 3), (64, 32, 4, 3), (256, 64, 8, 3)]


def candidates(group: int) -> list[FlashLaunch]:
    """Launches for `group` query heads per KV head (packing only where heads share one)."""
    packs = sorted({1, math.gcd(4, group)})
    out = [FlashLaunch(*shape, tma=True, pack=pack)
           for shape, pack in itertools.product(SHAPES, packs)]
    return out + [FlashLaunch(64, 64, 4, 3), FlashLaunch(128, 64, 8, 4)]  # pointer loads


def _inputs(heads: int, kv_heads: int, dim: int, dtype: torch.dtype, new: int, keys: int):
    g = torch.Generator(device="cuda").manual_seed(0)
    q = torch.randn(REQUESTS * new, heads, dim, dtype=dtype, device="cuda", generator=g)
    k = torch.randn(REQUESTS * keys, kv_heads, dim, dtype=dtype, device="cuda", generator=g)
    v = torch.randn_like(k)
    cu_q = cumulative_lengths(torch.full((REQUESTS,), new, device="cuda"))
    cu_k = cumulative_lengths(torch.full((REQUESTS,), keys, device="cuda"))
    return q, k, v, cu_q, cu_k, new, keys


def tune(heads: int, kv_heads: int, dim: int, dtype: torch.dtype) -> dict:
    """The fastest launch for this head layout, with its time and torch's (ms, summed over
    `WORKLOADS`)."""
    scale = dim**-0.5
    cases = [_inputs(heads, kv_heads, dim, dtype, new, keys) for new, keys in WORKLOADS.values()]

    def torch_flash(q, k, v, cu_q, cu_k, new, keys):  # noqa: ANN001, ANN202
        return torch.ops.aten._flash_attention_forward(
            q, k, v, cu_q, cu_k, new, keys, 0.0, True, False, scale=scale)[0]

    torch_ms = sum(triton.testing.do_bench(lambda c=c: torch_flash(*c)) for c in cases)
    wants = [torch_flash(*c).float() for c in cases]
    best: tuple[float, FlashLaunch] | None = None
    for launch in candidates(heads // kv_heads):
        try:
            for case, want in zip(cases, wants, strict=True):
                got = flash_attention(*case[:6], sm_scale=scale, launch=launch)
                if (got.float() - want).abs().max().item() > 0.05:  # bf16 rounding is ~0.01
                    raise AssertionError(f"{launch} differs from torch's kernel")
            ms = sum(triton.testing.do_bench(lambda c=c, la=launch: flash_attention(
                *c[:6], sm_scale=scale, launch=la)) for c in cases)
        except (triton.runtime.errors.OutOfResources, triton.CompilationError, RuntimeError) as e:
            # Too much shared memory, or a pass that rejects the shape (Triton 3.6: some
            # 4-warp TMA pipelines): not a launch for this device.  A wrong result still fails.
            print(f"  {launch}: skipped ({type(e).__name__})", flush=True)
            continue
        print(f"  {launch}: {ms:.4f} ms (torch {torch_ms:.4f})", flush=True)
        if best is None or ms < best[0]:
            best = (ms, launch)
    if best is None:
        raise RuntimeError("no flash_attention launch compiled on this device")
    return {**asdict(best[1]), "ms": best[0], "torch_flash_ms": torch_ms,
            "workloads": list(WORKLOADS)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--heads", type=int, default=32)
    p.add_argument("--kv-heads", type=int, default=8)
    p.add_argument("--head-dim", type=int, default=128)
    p.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16"])
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    dtype = getattr(torch, args.dtype)
    entry = tune(args.heads, args.kv_heads, args.head_dim, dtype)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / tuning.table_name(TUNING_KERNEL, tuning.device_key())
    table = json.loads(path.read_text()) if path.is_file() else {}
    table[tuning_key(args.heads, args.kv_heads, args.head_dim, dtype)] = {"1": entry}
    path.write_text(json.dumps(table, indent=1, sort_keys=True))
    print(json.dumps(entry))


if __name__ == "__main__":
    main()
