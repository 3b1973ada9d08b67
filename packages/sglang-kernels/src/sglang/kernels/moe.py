"""Fused mixture-of-experts MLP: every (token, chosen expert) pair through its expert's SwiGLU
MLP in two grouped GEMMs, with no per-expert Python loop and no host synchronisation.

1. `align_by_expert` sorts the T*top_k (token, slot) pairs by expert and pads each expert's run
   to a multiple of `block_m`, so every block of `block_m` sorted rows belongs to one expert.
2. The gate/up GEMM: each program takes one such block and `block_n` intermediate features,
   gathers its tokens' rows of x, multiplies them by the expert's gate rows and up rows (two fp32
   accumulators over one pass of x) and stores silu(gate) * up per (token, slot).
3. The down GEMM: the same blocks over that intermediate, scaled by each pair's router weight.
4. The top_k rows of each token are summed (a small torch reduction).

Experts are stacked: `w13` [E, 2*I, H] ([gate; up] rows per expert, the checkpoint layout of
transformers' fused experts) and `w2` [E, H, I]. The grid covers the padded worst case and
blocks past the real padded length exit at once, so the launch needs no `.item()`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from sglang.kernels import tuning
from sglang.kernels._triton import check_device, dot_precision, interpreting
from sglang.kernels.moe_align import ExpertAlignment, align_by_expert

TUNING_KERNEL = "fused_moe"


@dataclass(frozen=True)
class MoeConfig:
    """Launch shape: sorted rows per block (the padding unit), output features and K chunk per
    program, warps, pipeline stages."""

    block_m: int = 64
    block_n: int = 64
    block_k: int = 64
    num_warps: int = 4
    num_stages: int = 3

    @classmethod
    def for_shape(cls, num_pairs: int, num_experts: int, element_size: int = 2) -> MoeConfig:
        """Untuned starting points (not yet swept on a GPU). Each pipeline stage holds an x
        tile and two weight tiles in shared memory; fp32 inputs take fewer stages to fit."""
        wide = element_size >= 4
        # Few pairs per expert (decode): small blocks waste less padding; tl.dot needs >= 16.
        if num_pairs <= num_experts * 16:
            return cls(block_m=16, block_n=64, block_k=64, num_stages=3 if wide else 4)
        if num_pairs <= num_experts * 64:
            return cls(block_m=32, block_n=64, block_k=64, num_stages=3)
        return cls(block_m=64, block_n=128, block_k=64, num_warps=8, num_stages=2 if wide else 3)


def tuning_key(num_experts: int, hidden: int, inter: int, dtype: torch.dtype) -> str:
    return f"E{num_experts}_H{hidden}_I{inter}_{str(dtype).removeprefix('torch.')}"


def gemm_configs(
    tokens: int, top_k: int, num_experts: int, hidden: int, inter: int, dtype: torch.dtype,
    device: torch.device,
) -> tuple[MoeConfig, MoeConfig]:
    """Launch shapes of the gate/up and the down GEMM: measured on this device
    (`sglang.kernels.moe_tune`) when a table holds the shape, else the heuristic for both.
    The two share `block_m`, the padding unit of the one expert alignment."""
    if device.type == "cuda":
        entry = tuning.lookup(TUNING_KERNEL, tuning_key(num_experts, hidden, inter, dtype),
                              tokens, tuning.device_key(device))
        if entry is not None:
            return MoeConfig(**entry["up"]), MoeConfig(**entry["down"])
    config = MoeConfig.for_shape(tokens * top_k, num_experts, torch.finfo(dtype).bits // 8)
    return config, config


@triton.jit
def _moe_gemm_kernel(
    a_ptr, w_ptr, out_ptr, weight_ptr,
    sorted_ptr, expert_ptr, num_padded_ptr,
    N, K, num_pairs,
    stride_am, stride_we, stride_wn, stride_om,
    A_ROW_DIV: tl.constexpr, GATED: tl.constexpr, MUL_WEIGHT: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    PRECISION: tl.constexpr,
):
    """out[pair, n] = (a[pair // A_ROW_DIV] . w[e, n]) for one block of pairs of expert e;
    GATED: silu(a . w[e, n]) * (a . w[e, N + n]); MUL_WEIGHT: times the pair's router weight."""
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    if pid_m * BLOCK_M >= tl.load(num_padded_ptr):
        return
    rm = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    pair = tl.load(sorted_ptr + rm)
    valid = pair < num_pairs
    row = (pair // A_ROW_DIV).to(tl.int64)
    expert = tl.load(expert_ptr + pid_m).to(tl.int64)
    rn = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    n_ok = rn < N
    w_base = w_ptr + expert * stride_we
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    acc_up = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        rk = k0 + tl.arange(0, BLOCK_K)
        k_ok = rk < K
        a = tl.load(a_ptr + row[:, None] * stride_am + rk[None, :],
                    mask=valid[:, None] & k_ok[None, :], other=0.0)
        w_mask = k_ok[:, None] & n_ok[None, :]
        w = tl.load(w_base + rn[None, :] * stride_wn + rk[:, None], mask=w_mask, other=0.0)
        acc = tl.dot(a, w, acc, input_precision=PRECISION)
        if GATED:
            wu = tl.load(w_base + (rn + N)[None, :] * stride_wn + rk[:, None], mask=w_mask,
                         other=0.0)
            acc_up = tl.dot(a, wu, acc_up, input_precision=PRECISION)
    if GATED:
        acc = acc * tl.sigmoid(acc) * acc_up
    if MUL_WEIGHT:
        acc = acc * tl.load(weight_ptr + pair, mask=valid, other=0.0).to(tl.float32)[:, None]
    out = out_ptr + pair.to(tl.int64)[:, None] * stride_om + rn[None, :]
    tl.store(out, acc.to(out_ptr.dtype.element_ty), mask=valid[:, None] & n_ok[None, :])


def _grouped_gemm(
    a: torch.Tensor, w: torch.Tensor, out: torch.Tensor, weights: torch.Tensor | None,
    align: ExpertAlignment, n: int, a_row_div: int, gated: bool, config: MoeConfig,
) -> None:
    num_pairs = out.shape[0]
    grid = (align.expert_ids.numel(), triton.cdiv(n, config.block_n))
    extra = {} if interpreting() else dict(num_warps=config.num_warps, num_stages=config.num_stages)
    _moe_gemm_kernel[grid](
        a, w, out, weights if weights is not None else out,
        align.sorted_ids, align.expert_ids, align.num_padded,
        n, a.shape[1], num_pairs,
        a.stride(0), w.stride(0), w.stride(1), out.stride(0),
        A_ROW_DIV=a_row_div, GATED=gated, MUL_WEIGHT=weights is not None,
        BLOCK_M=align.block_m, BLOCK_N=config.block_n, BLOCK_K=config.block_k,
        PRECISION=dot_precision(a.dtype), **extra,
    )


def fused_moe(
    x: torch.Tensor,
    w13: torch.Tensor,
    w2: torch.Tensor,
    topk_weights: torch.Tensor,
    topk_ids: torch.Tensor,
    config: MoeConfig | None = None,
) -> torch.Tensor:
    """sum_j topk_weights[t, j] * down_e(silu(gate_e(x_t)) * up_e(x_t)), e = topk_ids[t, j].

    x [T, H]; w13 [E, 2I, H]; w2 [E, H, I]; topk_weights / topk_ids [T, top_k]. Returns [T, H]
    in x's dtype (fp32 accumulation inside each GEMM)."""
    check_device(x, w13, w2, topk_ids)
    tokens, hidden = x.shape
    num_experts, two_i, _ = w13.shape
    inter = two_i // 2
    top_k = topk_ids.shape[1]
    if w2.shape != (num_experts, hidden, inter) or w13.shape[2] != hidden:
        raise ValueError(f"expert shapes w13 {tuple(w13.shape)}, w2 {tuple(w2.shape)} "
                         f"do not fit hidden size {hidden}")
    if tokens == 0:
        return x.new_zeros(0, hidden)
    up, down = (config, config) if config else gemm_configs(
        tokens, top_k, num_experts, hidden, inter, x.dtype, x.device)
    if up.block_m != down.block_m:
        raise ValueError(f"the two GEMMs must share block_m, got {up.block_m} and {down.block_m}")
    x, w13, w2 = x.contiguous(), w13.contiguous(), w2.contiguous()
    align = align_by_expert(topk_ids, num_experts, up.block_m)
    pairs = tokens * top_k
    h = x.new_empty(pairs, inter)
    _grouped_gemm(x, w13, h, None, align, inter, top_k, True, up)
    y = x.new_empty(pairs, hidden)
    weights = topk_weights.reshape(-1).to(torch.float32).contiguous()
    _grouped_gemm(h, w2, y, weights, align, hidden, 1, False, down)
    return y.view(tokens, top_k, hidden).sum(dim=1, dtype=torch.float32).to(x.dtype)
