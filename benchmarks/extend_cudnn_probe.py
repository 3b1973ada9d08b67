"""Can torch's cuDNN attention take ragged (varlen) extend batches, and how fast is it?

SDPA's default on Hopper is cuDNN's fused attention, faster than the FlashAttention-2 kernel
behind `aten._flash_attention_forward` (our prefill path). This probe calls
`aten._cudnn_attention_forward` with cumulative offsets on Llama-3-8B heads, with grouped K/V
heads and with K/V expanded to every query head, checks the output against SDPA, and times
both against SDPA and the varlen flash kernel. It only reports; nothing here is used at runtime.

`--dense` probes instead the dense route a uniform plain prefill could take: SDPA forced onto
cuDNN with grouped K/V heads (`enable_gqa`) on strided [batch, heads, len, dim] views of the
[tokens, heads, dim] tensors (no copies), its error, its steady time, and the first-call cost
of each new sequence length (cuDNN builds an execution plan per shape; serving sees a new
prompt length at nearly every prefill).

    python3 benchmarks/extend_cudnn_probe.py [--dense]
"""

from __future__ import annotations

import json
import time

import torch
import torch.nn.functional as F
from triton.testing import do_bench

HEADS, KV_HEADS, DIM, REQS, LEN = 32, 8, 128, 4, 2048


def ms(fn) -> float:  # noqa: ANN001
    return float(do_bench(fn, warmup=10, rep=50, return_mode="median"))


def main() -> None:
    dev, dt = "cuda", torch.bfloat16
    torch.manual_seed(0)
    q = torch.randn(REQS * LEN, HEADS, DIM, device=dev, dtype=dt)
    k = torch.randn(REQS * LEN, KV_HEADS, DIM, device=dev, dtype=dt)
    v = torch.randn_like(k)
    cu = torch.arange(0, (REQS + 1) * LEN, LEN, device=dev, dtype=torch.int32)
    scale = DIM**-0.5

    def dense(x: torch.Tensor) -> torch.Tensor:
        return x.view(REQS, LEN, -1, DIM).transpose(1, 2)

    group = HEADS // KV_HEADS
    ke, ve = (x.repeat_interleave(group, dim=1) for x in (k, v))
    want = F.scaled_dot_product_attention(dense(q), dense(ke), dense(ve), is_causal=True)
    want = want.transpose(1, 2).reshape(REQS * LEN, HEADS, DIM)
    out: dict = {"sdpa_ms": ms(lambda: F.scaled_dot_product_attention(
        dense(q), dense(ke), dense(ve), is_causal=True))}
    out["flash_varlen_ms"] = ms(lambda: torch.ops.aten._flash_attention_forward(
        q, k, v, cu, cu, LEN, LEN, 0.0, True, False, scale=scale))

    def cudnn(kk: torch.Tensor, vv: torch.Tensor):  # noqa: ANN202
        return torch.ops.aten._cudnn_attention_forward(
            q, kk, vv, None, cu, cu, LEN, LEN, False, 0.0, True, False, scale=scale)[0]

    for name, (kk, vv) in {"gqa": (k, v), "expanded": (ke, ve)}.items():
        try:
            got = cudnn(kk, vv)
            out[f"cudnn_{name}_max_abs_diff"] = (got.float() - want.float()).abs().max().item()
            out[f"cudnn_{name}_ms"] = ms(lambda kk=kk, vv=vv: cudnn(kk, vv))
        except Exception as e:  # noqa: BLE001 - the point is to learn whether it runs
            out[f"cudnn_{name}_error"] = f"{type(e).__name__}: {str(e)[:300]}"
    out["expand_kv_ms"] = ms(lambda: [x.repeat_interleave(group, dim=1) for x in (k, v)])
    print(json.dumps(out, indent=1))


def dense_probe() -> None:
    from torch.nn.attention import SDPBackend, sdpa_kernel

    dev, dt = "cuda", torch.bfloat16
    torch.manual_seed(0)
    out: dict = {}

    def views(reqs: int, length: int) -> tuple[torch.Tensor, ...]:
        q = torch.randn(reqs * length, HEADS, DIM, device=dev, dtype=dt)
        k = torch.randn(reqs * length, KV_HEADS, DIM, device=dev, dtype=dt)
        v = torch.randn_like(k)
        return tuple(x.view(reqs, length, -1, DIM).transpose(1, 2) for x in (q, k, v))

    def attend(q, k, v, backend):  # noqa: ANN001, ANN202
        with sdpa_kernel(backend):
            return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)

    q, k, v = views(REQS, LEN)
    group = HEADS // KV_HEADS
    want = F.scaled_dot_product_attention(q, k.repeat_interleave(group, 1),
                                          v.repeat_interleave(group, 1), is_causal=True)
    for name, backend in (("cudnn", SDPBackend.CUDNN_ATTENTION),
                          ("flash", SDPBackend.FLASH_ATTENTION)):
        try:
            got = attend(q, k, v, backend)
            out[f"{name}_gqa_strided_max_abs_diff"] = (got.float() - want.float()).abs().max().item()
            out[f"{name}_gqa_strided_ms"] = ms(lambda b=backend: attend(q, k, v, b))
        except Exception as e:  # noqa: BLE001 - the point is to learn whether it runs
            out[f"{name}_gqa_strided_error"] = f"{type(e).__name__}: {str(e)[:300]}"
    first = {}
    for length in (2047, 1999, 1500, 1001, 517, 2047):
        qq, kk, vv = views(1, length)
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        try:
            attend(qq, kk, vv, SDPBackend.CUDNN_ATTENTION)
            torch.cuda.synchronize()
            first[str(length)] = [round((time.perf_counter() - t0) * 1e3, 3),
                                  round(ms(lambda a=(qq, kk, vv): attend(
                                      *a, SDPBackend.CUDNN_ATTENTION)), 4)]
        except Exception as e:  # noqa: BLE001
            first[str(length)] = f"{type(e).__name__}: {str(e)[:200]}"
    out["cudnn_first_call_ms_then_steady_ms_by_length"] = first
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    import sys

    dense_probe() if "--dense" in sys.argv else main()
