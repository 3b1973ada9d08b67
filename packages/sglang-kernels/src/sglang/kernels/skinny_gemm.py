"""y = x W^T for a handful of rows of x (decode at batch 1), as a streaming GEMV.

At batch 1 a linear layer is one pass over its weight, so what matters is keeping enough weight
bytes in flight to reach the memory bandwidth. Each program owns `block_n` output features and
streams their weight rows in `block_k` chunks, keeping `rows x block_n x block_k` products in
fp32 registers and reducing them once at the end (no cross-lane reduction inside the loop); a
small `block_n` gives enough programs to fill the GPU even for 4096-wide outputs, with no split-K
pass. With programmatic dependent launch (`pdl_args`) the first weight chunk is fetched before
waiting for the kernel that produced x, so the weight stream starts during that kernel's tail.

Measured on an H100 (benchmarks/gemv_micro.py, Llama-3-8B shapes): at one row 1.14-1.23x faster
than cuBLAS per layer; at 2-8 rows slower than cuBLAS, which is why the runtime uses it for
single rows by default. On an H200, timed in CUDA graphs (`gemv_tune`): 1.03-1.37x cuBLAS on
every Llama-3-8B weight, 3.4-4.5 TB/s. Fusing rmsnorm, silu-and-mul and the residual add into its
prologue and epilogue was tried twice and was slower end to end: on the H100 (every program
re-reads the activations from L2), and on the H200, where batch-1 decode went from 237 to 215
tok/s with the norm in the qkv and gate/up prologues, and to 231 with only SiLU-and-mul in the
gate/up epilogue (docs/benchmarks.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from sglang.kernels import tuning
from sglang.kernels._triton import check_device, interpreting, pdl_args, pdl_release, pdl_wait

MAX_ROWS = 8
TUNING_KERNEL = "gemv"


def tuning_key(n: int, k: int, dtype: torch.dtype) -> str:
    return f"N{n}_K{k}_{str(dtype).removeprefix('torch.')}"


@dataclass(frozen=True)
class GemvConfig:
    """Launch shape of one GEMV: output features per program, K chunk, warps, pipeline
    stages (1 loads straight into registers)."""

    block_n: int = 4
    block_k: int = 1024
    num_warps: int = 4
    num_stages: int = 2

    @classmethod
    def for_shape(cls, rows: int, k: int) -> GemvConfig:
        """The default launch shape. Swept on an H100 over Llama-3-8B's layers at one row
        (benchmarks/gemv_micro.py --sweep): 4 outputs per program and a K chunk as long as
        possible (the whole row up to 4096, else the largest power of two dividing K) were
        within 2% of the best everywhere; weight loads skipping L1 (.cg) were 2-20% slower,
        and 8 outputs per program with a 4096 chunk spill registers. More rows shrink the
        chunk to keep the fp32 products per thread (rows x 4 x block_k / 128) at 128."""
        cap = max(4096 // triton.next_power_of_2(rows), 64)
        block_k = min(cap, triton.next_power_of_2(k))
        while block_k > 512 and k % block_k:
            block_k //= 2
        if k % block_k:
            block_k = min(cap, triton.next_power_of_2(k))
        return cls(block_k=block_k)


def tuned_plan(n: int, k: int, dtype: torch.dtype, max_rows: int,
               device: torch.device | str | None = None) -> list[GemvConfig | None]:
    """For 1..`max_rows` rows, the launch to use on a [n, k] weight, or None where cuBLAS is
    faster, from the device's measured table (`python -m sglang.kernels.gemv_tune`); without
    a measurement for the shape, the default launch at every row count."""
    key = tuning_key(n, k, dtype)
    dev = tuning.device_key(device)
    plan: list[GemvConfig | None] = []
    for rows in range(1, max_rows + 1):
        entry = tuning.lookup(TUNING_KERNEL, key, rows, dev)
        if entry is None:
            plan.append(GemvConfig.for_shape(rows, k))
        else:
            plan.append(GemvConfig(**entry["gemv"]) if entry.get("gemv") else None)
    return plan


@triton.jit
def _load_weight(w_rows, rk, K, EVEN_K: tl.constexpr):
    # Streamed once per step: keep it from evicting the activations from the caches.
    if EVEN_K:
        return tl.load(w_rows + rk[None, :], eviction_policy="evict_first")
    return tl.load(w_rows + rk[None, :], mask=(rk < K)[None, :], other=0.0,
                   eviction_policy="evict_first")


@triton.jit
def _accumulate(acc, w, x_rows, rk, m_ok, K):
    """Add one K chunk's products to the accumulators."""
    x_mask = m_ok[:, None] & (rk < K)[None, :]
    xk = tl.load(x_rows + rk[None, :], mask=x_mask, other=0.0).to(tl.float32)
    return acc + xk[:, None, :] * w.to(tl.float32)[None, :, :]


@triton.jit
def _gemv_kernel(
    x_ptr, w_ptr, b_ptr, y_ptr,
    M, N, K,
    stride_xm, stride_wn, stride_ym,
    HAS_BIAS: tl.constexpr, EVEN_K: tl.constexpr, USE_PDL: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):
    pid = tl.program_id(0)
    rn = pid * BLOCK_N + tl.arange(0, BLOCK_N)
    rm = tl.arange(0, BLOCK_M)
    m_ok = rm < M
    # Rows past N are clamped rather than masked so the weight loads stay unmasked.
    rn_safe = tl.minimum(rn, N - 1).to(tl.int64)
    w_rows = w_ptr + rn_safe[:, None] * stride_wn
    x_rows = x_ptr + rm[:, None] * stride_xm

    acc = tl.zeros((BLOCK_M, BLOCK_N, BLOCK_K), dtype=tl.float32)
    k_start = 0
    if USE_PDL:
        # No kernel writes the weights: the first chunk is fetched before waiting for the
        # previous kernel (whose output x may be).
        rk = tl.arange(0, BLOCK_K)
        w = _load_weight(w_rows, rk, K, EVEN_K)
        pdl_release()
        pdl_wait()
        acc = _accumulate(acc, w, x_rows, rk, m_ok, K)
        k_start = BLOCK_K
    for k0 in range(k_start, K, BLOCK_K):
        rk = k0 + tl.arange(0, BLOCK_K)
        w = _load_weight(w_rows, rk, K, EVEN_K)
        acc = _accumulate(acc, w, x_rows, rk, m_ok, K)
    y = tl.sum(acc, 2)
    if HAS_BIAS:
        y += tl.load(b_ptr + rn_safe).to(tl.float32)[None, :]
    out_mask = m_ok[:, None] & (rn < N)[None, :]
    tl.store(y_ptr + rm[:, None] * stride_ym + rn[None, :], y.to(y_ptr.dtype.element_ty),
             mask=out_mask)


def gemv(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    *,
    config: GemvConfig | None = None,
) -> torch.Tensor:
    """``x @ weight.T (+ bias)`` for ``x`` of 1..MAX_ROWS rows, accumulated in fp32.

    Args:
        x: ``[M, K]`` fp32/fp16/bf16, contiguous along K (row stride free).
        weight: ``[N, K]`` row-major, x's dtype. bias: ``[N]`` or None.
        config: launch shape; default `GemvConfig.for_shape`.

    Returns:
        ``[M, N]`` in x's dtype.
    """
    if x.dim() != 2 or weight.dim() != 2 or x.shape[1] != weight.shape[1]:
        raise ValueError(f"gemv: x {tuple(x.shape)} and weight {tuple(weight.shape)} mismatch")
    m, k = x.shape
    n = weight.shape[0]
    if not 1 <= m <= MAX_ROWS:
        raise ValueError(f"gemv handles 1..{MAX_ROWS} rows, got {m}")
    if weight.stride(1) != 1 or x.stride(1) != 1:
        raise ValueError("gemv needs x and weight contiguous along K")
    if x.dtype != weight.dtype:
        raise ValueError(f"gemv: x is {x.dtype} but weight is {weight.dtype}")
    if bias is not None and bias.shape != (n,):
        raise ValueError(f"gemv: bias {tuple(bias.shape)} does not match N={n}")
    check_device(x, weight)
    y = torch.empty((m, n), dtype=x.dtype, device=x.device)
    cfg = config or GemvConfig.for_shape(m, k)
    _gemv_kernel[(triton.cdiv(n, cfg.block_n),)](
        x, weight, bias if bias is not None else weight, y,
        m, n, k,
        x.stride(0), weight.stride(0), y.stride(0),
        HAS_BIAS=bias is not None, EVEN_K=k % cfg.block_k == 0, **pdl_args(x),
        BLOCK_M=triton.next_power_of_2(m), BLOCK_N=cfg.block_n, BLOCK_K=cfg.block_k,
        num_warps=1 if interpreting() else cfg.num_warps,
        num_stages=cfg.num_stages,
    )
    return y
