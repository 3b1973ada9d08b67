"""y = x @ dequant(qweight) over the interleaved 4/8-bit layout (`quant_layout`): the GPU path.

Each program owns a block of output features (rows of the interleaved weight, K contiguous) and
a slice of K. A [BLOCK_N, SLAB] tile of words holds 32 // bits bit fields, each a contiguous run
of SLAB k values, so every tensor stays 2-D: one shift and one mask-and-or per field put the
value q into the mantissa of 1.0, read as the float f = 1 + q / 2**bits (no integer-to-float
conversion). With a = s * 2**bits and c = s * (2**bits + z), the weight is a * f - c.

- One row (batch-1 decode, `_gemv_kernel`): the kernel adds P = sum x * f and X = sum x per
  group and applies y += a * P - c * X once per group, keeping the per-weight work to the shift,
  the mask-and-or and one fused multiply-add (the sm90 build runs ~5 instructions per weight:
  ptxas rematerializes the mask constant and x is widened from bf16). With `PREFETCH` the
  next block's words are requested before this block is multiplied, and under programmatic
  dependent launch the first block is requested while the previous kernel still runs.
- 2-16 rows on CUDA (`IlConfig.mma`): the tensor-core kernel of `quant_interleaved_mma`.
- More rows (`_gemm_kernel`): each field's tile becomes a * f - c in x's dtype and goes to
  `tl.dot` (K = SLAB per dot), so the dequantized tile is reused by the BLOCK_M rows.
- `IlConfig.dequant` (the heuristic's choice from `DEQUANT_MIN_M` rows; the measured table's
  where it was faster): the weight is dequantized into a dense [N, K] (`_dequant_kernel`) and
  multiplied by cuBLAS.

Split-K partials land in an fp32 [split, M, N] buffer summed in split order (deterministic):
by the last program of each tile to finish (`split_counters`), else by a second launch.
Launch shapes come from measured tables (kernel "quant_gemm_il", written by
`quant_gemm_tune --layout interleaved`), else from `IlConfig.for_shape`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from sglang.kernels import tuning
from sglang.kernels._triton import (
    check_device,
    dot_precision,
    interpreting,
    num_sms,
    pdl_args,
    pdl_enter,
)
from sglang.kernels.quant_interleaved_mma import MAGIC, MMA_BLOCK_M, _mma_kernel, mma_applies
from sglang.kernels.quant_layout import (
    SLAB,
    check_activations,
    check_bits,
    check_group_size,
    check_group_terms,
    interleave_block,
)
from sglang.kernels.quant_matmul import tuning_key
from sglang.kernels.split_k import (
    gemm_tile,
    heuristic_split,
    split_counters,
    split_output,
    store_or_sum,
    sum_splits,
)

TUNING_KERNEL = "quant_gemm_il"
# From this many rows the heuristic dequantizes the weight once and multiplies densely
# (prefill-sized products, where the dense matmul's time dwarfs writing the weight).
DEQUANT_MIN_M = 512
_SLAB = tl.constexpr(SLAB)  # a global the kernels read must be a constexpr


@dataclass(frozen=True)
class IlConfig:
    """Launch shape: rows and output features per program, K splits, whether the one-row
    kernel requests the next block before multiplying this one, warps, stages; or `dequant`:
    dense weight + cuBLAS instead."""

    block_m: int = 16
    block_n: int = 64
    split_k: int = 1
    prefetch: bool = True
    num_warps: int = 4
    num_stages: int = 2
    dequant: bool = False
    mma: bool = False  # the tensor-core kernel (`quant_interleaved_mma`) where it applies

    @classmethod
    def for_shape(cls, m: int, n: int, k: int, bits: int, sms: int) -> IlConfig:
        """Untuned starting point: split K until about 4 programs per SM, keeping >= 4 blocks
        of K per split so the fp32 partials stay small next to the weight."""
        block_m = 1 if m == 1 else min(64, max(16, triton.next_power_of_2(m)))
        block_n = 64 if m <= 64 else 128
        tiles = triton.cdiv(m, block_m) * triton.cdiv(n, block_n)
        split = heuristic_split(tiles, k // interleave_block(bits), 4 * sms)
        return cls(block_m=block_m, block_n=block_n, split_k=split,
                   num_warps=4 if m <= 64 else 8, dequant=m >= DEQUANT_MIN_M)


def il_config(m: int, n: int, k: int, bits: int, group_size: int,
              device: torch.device) -> IlConfig:
    """The measured launch shape for this device and weight shape, else the heuristic."""
    key = tuning_key(n, k, bits, group_size)
    return (tuning.measured_config(IlConfig, TUNING_KERNEL, key, m, device)
            or IlConfig.for_shape(m, n, k, bits, num_sms(device)))


@triton.jit
def _field_as_float(words, J: tl.constexpr, BITS: tl.constexpr):
    """Bit field J of each word as 1 + q / 2**BITS: q moved to the top of the fp32 mantissa
    (bits 23 - BITS .. 22) under the exponent of 1.0."""
    SHIFT: tl.constexpr = 23 - BITS - BITS * J
    if SHIFT >= 0:
        moved = words << SHIFT
    else:
        moved = words >> (-SHIFT)
    mant = moved & (((1 << BITS) - 1) << (23 - BITS))
    return (mant | 0x3F800000).to(tl.float32, bitcast=True)


@triton.jit
def _scale_terms(b, s_ptr, z_ptr, stride_sg, stride_zg, rn64, rows_ok,
                 J: tl.constexpr, BITS: tl.constexpr, GROUP: tl.constexpr):
    """(a, c) = (s * 2**BITS, s * (2**BITS + z)) per row, for the group of bit field J of
    block b: the weight is a * f - c."""
    g = (b * _SLAB * (32 // BITS) + J * _SLAB) // GROUP
    s = tl.load(s_ptr + g * stride_sg + rn64, mask=rows_ok, other=0.0).to(tl.float32)
    z = tl.load(z_ptr + g * stride_zg + rn64, mask=rows_ok, other=0.0).to(tl.float32)
    a = s * (1 << BITS)
    return a, a + z * s


@triton.jit
def _field_weight(words, b, s_ptr, z_ptr, stride_sg, stride_zg, rn64, n_ok,
                  J: tl.constexpr, BITS: tl.constexpr, GROUP: tl.constexpr):
    """The fp32 weights a * f - c of bit field J of a [rows, SLAB] tile of block b."""
    a, c = _scale_terms(b, s_ptr, z_ptr, stride_sg, stride_zg, rn64, n_ok, J, BITS, GROUP)
    return _field_as_float(words, J, BITS) * a[:, None] - c[:, None]


@triton.jit
def _gemv_kernel(
    x_ptr, q_ptr, s_ptr, z_ptr, out_ptr, part_ptr, cnt_ptr,
    N, K, blocks_per_split,
    stride_qn, stride_sg, stride_zg, stride_os,
    BITS: tl.constexpr, GROUP: tl.constexpr, FIELDS_PER_GROUP: tl.constexpr,
    BLOCK_N: tl.constexpr, PREFETCH: tl.constexpr, SUM_IN_KERNEL: tl.constexpr,
    USE_PDL: tl.constexpr,
):
    PER: tl.constexpr = 32 // BITS
    IB: tl.constexpr = _SLAB * PER
    pid_n = tl.program_id(0)
    pid_k = tl.program_id(1)
    rn = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    n_ok = rn < N
    rn64 = rn.to(tl.int64)
    lane = tl.arange(0, _SLAB)
    q_rows = q_ptr + rn64[:, None] * stride_qn + lane[None, :]
    b_start = pid_k * blocks_per_split
    b_end = tl.minimum(b_start + blocks_per_split, K // IB)
    # (Masks as vectors: the interpreter rejects a tensor & a Python bool.)
    # PREFETCH: block b + 1's words are requested before block b is multiplied, so a
    # program keeps a load in flight while it computes (the loop is not pipelined for it).
    if PREFETCH:
        words = tl.load(q_rows + b_start * _SLAB,
                        mask=(n_ok & ((rn * 0 + b_start) < b_end))[:, None], other=0,
                        eviction_policy="evict_first")
    # No kernel writes the weights: the first block is requested before waiting for the
    # previous kernel, whose output x may be.
    pdl_enter(USE_PDL)
    acc = tl.zeros((BLOCK_N, _SLAB), dtype=tl.float32)
    corr = tl.zeros((BLOCK_N,), dtype=tl.float32)
    for b in range(b_start, b_end):
        if PREFETCH:
            cur = words
            words = tl.load(q_rows + (b + 1) * _SLAB,
                            mask=(n_ok & ((rn * 0 + b + 1) < b_end))[:, None], other=0,
                            eviction_policy="evict_first")
        else:
            cur = tl.load(q_rows + b * _SLAB, mask=n_ok[:, None], other=0,
                          eviction_policy="evict_first")
        p = tl.zeros((BLOCK_N, _SLAB), dtype=tl.float32)
        xs = tl.zeros((_SLAB,), dtype=tl.float32)
        for j in tl.static_range(PER):
            xj = tl.load(x_ptr + b * IB + j * _SLAB + lane).to(tl.float32)
            p += _field_as_float(cur, j, BITS) * xj[None, :]
            xs += xj
            if (j + 1) % FIELDS_PER_GROUP == 0:
                a, c = _scale_terms(b, s_ptr, z_ptr, stride_sg, stride_zg, rn64, n_ok,
                                    j, BITS, GROUP)
                acc += a[:, None] * p
                corr += c * tl.sum(xs, axis=0)
                p = tl.zeros((BLOCK_N, _SLAB), dtype=tl.float32)
                xs = tl.zeros((_SLAB,), dtype=tl.float32)
    store_or_sum(tl.sum(acc, axis=1) - corr, out_ptr, part_ptr, cnt_ptr, rn64, n_ok, pid_n,
                  pid_k, tl.num_programs(1), stride_os, SUM_IN_KERNEL)


@triton.jit
def _gemm_kernel(
    x_ptr, q_ptr, s_ptr, z_ptr, out_ptr, part_ptr, cnt_ptr,
    M, N, K, blocks_per_split,
    stride_xm, stride_qn, stride_sg, stride_zg, stride_os, stride_om,
    BITS: tl.constexpr, GROUP: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    PRECISION: tl.constexpr, SUM_IN_KERNEL: tl.constexpr, USE_PDL: tl.constexpr,
):
    pdl_enter(USE_PDL)
    PER: tl.constexpr = 32 // BITS
    IB: tl.constexpr = _SLAB * PER
    rm, rn, m_ok, n_ok, tile, pid_k = gemm_tile(M, N, BLOCK_M, BLOCK_N)
    rn64 = rn.to(tl.int64)
    lane = tl.arange(0, _SLAB)
    q_rows = q_ptr + rn64[:, None] * stride_qn + lane[None, :]
    x_rows = x_ptr + rm.to(tl.int64)[:, None] * stride_xm + lane[None, :]
    b_start = pid_k * blocks_per_split
    b_end = tl.minimum(b_start + blocks_per_split, K // IB)
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for b in range(b_start, b_end):
        words = tl.load(q_rows + b * _SLAB, mask=n_ok[:, None], other=0,
                        eviction_policy="evict_first")
        for j in tl.static_range(PER):
            w = _field_weight(words, b, s_ptr, z_ptr, stride_sg, stride_zg, rn64, n_ok,
                              j, BITS, GROUP)
            xj = tl.load(x_rows + b * IB + j * _SLAB, mask=m_ok[:, None], other=0.0)
            acc = tl.dot(xj, tl.trans(w.to(x_ptr.dtype.element_ty)), acc,
                         input_precision=PRECISION)
    store_or_sum(acc, out_ptr, part_ptr, cnt_ptr,
                  rm.to(tl.int64)[:, None] * stride_om + rn64[None, :],
                  m_ok[:, None] & n_ok[None, :], tile, pid_k,
                  tl.num_programs(2), stride_os, SUM_IN_KERNEL)


@triton.jit
def _dequant_kernel(
    q_ptr, s_ptr, z_ptr, w_ptr, N, K,
    stride_qn, stride_sg, stride_zg, stride_wn,
    BITS: tl.constexpr, GROUP: tl.constexpr, BLOCK_N: tl.constexpr,
):
    """w [N, K] = a * f - c for one block of K and BLOCK_N rows (many-row products go
    through this and a dense matmul: writing the weight once costs little next to them)."""
    PER: tl.constexpr = 32 // BITS
    IB: tl.constexpr = _SLAB * PER
    b = tl.program_id(1)
    rn = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    n_ok = rn < N
    rn64 = rn.to(tl.int64)
    lane = tl.arange(0, _SLAB)
    words = tl.load(q_ptr + rn64[:, None] * stride_qn + b * _SLAB + lane[None, :],
                    mask=n_ok[:, None], other=0)
    for j in tl.static_range(PER):
        w = _field_weight(words, b, s_ptr, z_ptr, stride_sg, stride_zg, rn64, n_ok,
                          j, BITS, GROUP)
        tl.store(w_ptr + rn64[:, None] * stride_wn + b * IB + j * _SLAB + lane[None, :],
                 w.to(w_ptr.dtype.element_ty), mask=n_ok[:, None])


def dequantize_interleaved(qweight: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor,
                           bits: int, group_size: int, dtype: torch.dtype) -> torch.Tensor:
    """The dense weight [N, K] (nn.Linear's orientation) of an interleaved qweight."""
    n, k = qweight.shape[0], qweight.shape[1] * (32 // bits)
    w = torch.empty((n, k), dtype=dtype, device=qweight.device)
    block_n = 32
    _dequant_kernel[(triton.cdiv(n, block_n), k // interleave_block(bits))](
        qweight, scales, zeros, w, n, k, qweight.stride(0), scales.stride(0), zeros.stride(0),
        w.stride(0), BITS=bits, GROUP=group_size, BLOCK_N=block_n)
    return w


def _fields_per_scale(bits: int, group_size: int) -> int:
    """Bit fields between scale applications of the one-row kernel: one group's fields when
    a block holds several groups, else the whole block."""
    return min(group_size, interleave_block(bits)) // SLAB


def _check_args(x: torch.Tensor, qweight: torch.Tensor, scales: torch.Tensor,
                zeros: torch.Tensor, bits: int, group_size: int) -> tuple[int, int, int]:
    op = "quant_gemm_interleaved"
    check_bits(bits)
    m, k = check_activations(op, x)
    if qweight.dtype != torch.int32 or qweight.dim() != 2 or qweight.stride(1) != 1:
        raise ValueError(f"{op}: qweight must be a contiguous 2-D int32 [N, K * bits // 32] "
                         f"tensor, got {qweight.dtype} {tuple(qweight.shape)}")
    n = qweight.shape[0]
    if qweight.shape[1] * (32 // bits) != k:
        raise ValueError(f"{op}: qweight holds K={qweight.shape[1] * 32 // bits} values per row, "
                         f"x has K={k}")
    if k % interleave_block(bits):
        raise ValueError(f"{op}: K={k} is not a multiple of {interleave_block(bits)} (the "
                         f"{bits}-bit block)")
    check_group_size(group_size, k)
    check_group_terms(op, x, scales, zeros, (k // group_size, n), along_n=True)
    return m, n, k


def quant_gemm_interleaved(
    x: torch.Tensor, qweight: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor,
    bits: int, group_size: int, *, config: IlConfig | None = None,
    integer_zeros: bool = False,
) -> torch.Tensor:
    """``x @ w`` for x ``[M, K]`` and an interleaved ``qweight`` int32 ``[N, K * bits // 32]``
    (`quant_layout.interleave_quant_weight`); scales and zeros ``[K // group_size, N]`` as in
    `quant_gemm`. Returns ``[M, N]`` in x's dtype, accumulated in fp32. `integer_zeros`: the
    caller's promise that every zero is a whole number in [0, 2**bits] (AWQ, GPTQ), which lets
    the tensor-core kernel subtract it from each weight exactly instead of correcting per block."""
    m, n, k = _check_args(x, qweight, scales, zeros, bits, group_size)
    check_device(x, qweight, scales, zeros)
    if x.stride(1) != 1:
        x = x.contiguous()
    if m == 0:
        return x.new_zeros(0, n)
    cfg = config or il_config(m, n, k, bits, group_size, x.device)
    if cfg.dequant:
        w = dequantize_interleaved(qweight, scales, zeros, bits, group_size, x.dtype)
        return torch.nn.functional.linear(x, w)
    per_split, split, part = split_output(k // interleave_block(bits), cfg.split_k, m, n, x)
    extra = {} if interpreting() else dict(num_warps=cfg.num_warps, num_stages=cfg.num_stages)
    stride_os = part.stride(0) if split > 1 else 0
    mma = cfg.mma and mma_applies(x, bits, group_size)
    one_row = m == 1 and cfg.block_m == 1 and not mma
    block_m = MMA_BLOCK_M if mma else 1 if one_row else max(16, cfg.block_m)
    tiles = triton.cdiv(m, block_m) * triton.cdiv(n, cfg.block_n)
    counters = split_counters(x.device, tiles) if split > 1 else None
    # Summed in the kernel: the partials and the result are separate buffers.
    out = torch.empty((m, n), dtype=x.dtype, device=x.device) if counters is not None else part
    args = (x, qweight, scales, zeros, out, part, counters if counters is not None else part)
    if mma:
        magic, base = MAGIC[x.dtype]
        _mma_kernel[(triton.cdiv(m, block_m), triton.cdiv(n, cfg.block_n), split)](
            *args, m, n, k, per_split,
            x.stride(0), qweight.stride(0), scales.stride(0), zeros.stride(0), stride_os,
            part.stride(-2), GROUP=group_size, MAGIC_BITS=magic, BASE=base, BLOCK_M=block_m,
            BLOCK_N=cfg.block_n, INTEGER_ZEROS=integer_zeros, SUM_IN_KERNEL=counters is not None,
            **extra, **pdl_args(x))
    elif one_row:
        _gemv_kernel[(tiles, split)](
            *args, n, k, per_split, qweight.stride(0), scales.stride(0), zeros.stride(0),
            stride_os, BITS=bits, GROUP=group_size,
            FIELDS_PER_GROUP=_fields_per_scale(bits, group_size), BLOCK_N=cfg.block_n,
            PREFETCH=cfg.prefetch, SUM_IN_KERNEL=counters is not None, **extra, **pdl_args(x))
    else:
        grid = (triton.cdiv(m, block_m), triton.cdiv(n, cfg.block_n), split)
        _gemm_kernel[grid](
            *args, m, n, k, per_split,
            x.stride(0), qweight.stride(0), scales.stride(0), zeros.stride(0), stride_os,
            part.stride(-2), BITS=bits, GROUP=group_size, BLOCK_M=block_m, BLOCK_N=cfg.block_n,
            PRECISION=dot_precision(x.dtype), SUM_IN_KERNEL=counters is not None, **extra,
            **pdl_args(x))
    return out if counters is not None else sum_splits(part, x.dtype)
