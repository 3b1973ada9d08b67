"""y = x @ dequant(qweight) with 4- or 8-bit weights dequantized inside the GEMM.

The layout is `sglang.kernels.quant_layout`'s (int32 words packing consecutive k rows, lowest
bits first; one scale and float zero point per group of k rows and column). Each program loads
a tile of packed words [BLOCK_K * bits // 32, BLOCK_N], expands it with shifts and masks into
[BLOCK_K, BLOCK_N] integers (a broadcast to [words, values per word, BLOCK_N] and a row-major
reshape: row r, value i is k = r * values + i, exactly the layout), applies (q - z) * s for its
group in fp32 registers, casts to x's dtype and accumulates `tl.dot` in fp32. Each q becomes a
float through the mantissa (bits 0x4B000000 | q read as fp32 are 2**23 + q; one subtraction),
not an integer-to-float conversion, and (q - z) * s is one fused multiply-add.

For 1-4 rows a second kernel (`_quant_gemv_kernel`, `QuantGemmConfig.use_dot=False`, the
default at 1-2 rows) skips the tensor cores: the dot operand's shared-memory round trip costs
more than M fp32 FMAs per weight there (sm90 SASS of the loops: ~8 against ~12 instructions per
weight; both kernels are bound by these instructions rather than by HBM at decode sizes).

Launch regimes (split-K is a launch parameter of every one):
- small M (<= 16, decode): one row block, narrow column blocks and split-K, so that enough
  programs stream disjoint slices of the weight to keep every SM's loads in flight; each weight
  byte is read once (the Marlin idea, without its hand-written pipeline). Split-K partials land
  in an fp32 [split, M, N] buffer that one small second pass sums in split order and casts
  (deterministic, unlike fp32 atomics; the buffer is small next to the weight).
- larger M: a tiled GEMM with wider row and column blocks, the dequantized tile reused by the
  BLOCK_M rows.

Launch shapes come from the measured tables of `sglang.kernels.tuning` (kernel "quant_gemm",
swept by `python -m sglang.kernels.quant_gemm_tune`), else from `QuantGemmConfig.for_shape`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from sglang.kernels import tuning
from sglang.kernels._triton import check_device, dot_precision, interpreting, num_sms
from sglang.kernels.quant_layout import check_quant_args
from sglang.kernels.split_k import gemm_tile, heuristic_split, split_output, sum_splits

TUNING_KERNEL = "quant_gemm"
SMALL_M = 16
FMA_M = 2  # rows up to which the default launch skips tensor cores
FMA_MAX_M = 4  # rows the no-tensor-core kernel accepts (its accumulators grow with M)


@dataclass(frozen=True)
class QuantGemmConfig:
    """Launch shape: rows, output features and K chunk per program, K splits, warps, stages."""

    block_m: int = 16
    block_n: int = 64
    block_k: int = 128
    split_k: int = 1
    num_warps: int = 4
    num_stages: int = 3
    # False: the no-tensor-core kernel (`_quant_gemv_kernel`), for 1-4 rows.
    use_dot: bool = True

    @classmethod
    def for_shape(cls, m: int, n: int, k: int, group_size: int, sms: int) -> QuantGemmConfig:
        """Untuned starting points (not yet swept on a GPU). The K chunk stays within one
        group so that a tile reads one row of scales and zeros. Split-K raises the program
        count towards `programs per SM x SMs` (more at small M, where every program only
        streams weight and latency must be hidden by numbers), keeping >= 4 K chunks a split
        so the partials stay a small fraction of the traffic."""
        block_k = min(128, group_size if group_size in (32, 64, 128) else 128)
        if m <= FMA_M:
            # ~8 instructions per weight against ~12 through tl.dot (sm90 SASS of the loop): the
            # dot path pays a shared-memory round trip into its operand layout.
            shape = dict(block_m=triton.next_power_of_2(m), block_n=64 // m, num_warps=4,
                         num_stages=3, use_dot=False)
            per_sm = 4
        elif m <= SMALL_M:
            shape = dict(block_m=16, block_n=64 if n >= 4096 else 32, num_warps=4, num_stages=4)
            per_sm = 4
        elif m <= 64:
            # A 128-deep K chunk here takes ~250 registers per thread at 64 rows (sm90 build).
            shape = dict(block_m=triton.next_power_of_2(m), block_n=64, num_warps=4,
                         num_stages=4)
            block_k, per_sm = min(block_k, 64), 2
        else:
            shape = dict(block_m=64 if m < 128 else 128, block_n=128, num_warps=8,
                         num_stages=3)
            block_k, per_sm = min(block_k, 64), 1
        tiles = triton.cdiv(m, shape["block_m"]) * triton.cdiv(n, shape["block_n"])
        split = heuristic_split(tiles, triton.cdiv(k, block_k), per_sm * sms)
        return cls(block_k=block_k, split_k=split, **shape)


def tuning_key(n: int, k: int, bits: int, group_size: int) -> str:
    return f"N{n}_K{k}_b{bits}_g{group_size}"


def gemm_config(
    m: int, n: int, k: int, bits: int, group_size: int, device: torch.device
) -> QuantGemmConfig:
    """The measured launch shape for this device and weight shape, else the heuristic."""
    key = tuning_key(n, k, bits, group_size)
    return (tuning.measured_config(QuantGemmConfig, TUNING_KERNEL, key, m, device)
            or QuantGemmConfig.for_shape(m, n, k, group_size, num_sms(device)))


@triton.jit
def _quant_gemm_kernel(
    x_ptr, q_ptr, s_ptr, z_ptr, out_ptr,
    M, N, K, group_size, chunks_per_split,
    stride_xm, stride_qk, stride_sg, stride_zg, stride_os, stride_om,
    BITS: tl.constexpr, ONE_GROUP_PER_TILE: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    PRECISION: tl.constexpr,
):
    PER_INT: tl.constexpr = 32 // BITS
    WORDS: tl.constexpr = BLOCK_K // PER_INT
    rm, rn, m_ok, n_ok, _, pid_k = gemm_tile(M, N, BLOCK_M, BLOCK_N)
    rn64 = rn.to(tl.int64)
    shifts = tl.arange(0, PER_INT) * BITS
    x_rows = x_ptr + rm.to(tl.int64)[:, None] * stride_xm
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    chunk_end = tl.minimum((pid_k + 1) * chunks_per_split, tl.cdiv(K, BLOCK_K))
    for chunk in range(pid_k * chunks_per_split, chunk_end):
        k0 = chunk * BLOCK_K
        rk = k0 + tl.arange(0, BLOCK_K)
        k_ok = rk < K
        rw = k0 // PER_INT + tl.arange(0, WORDS)
        words = tl.load(q_ptr + rw.to(tl.int64)[:, None] * stride_qk + rn64[None, :],
                        mask=(rw < K // PER_INT)[:, None] & n_ok[None, :], other=0,
                        eviction_policy="evict_first")
        # [WORDS, PER_INT, BLOCK_N] -> [BLOCK_K, BLOCK_N]: row r * PER_INT + i is k0 + that.
        # Each q goes into the mantissa of 2**23 (float bits 0x4B000000 | q = 2**23 + q), so
        # one subtraction makes it a float: no integer-to-float conversion per weight.
        q = ((words[:, None, :] >> shifts[None, :, None]) & ((1 << BITS) - 1)) | 0x4B000000
        q = tl.reshape(q, (BLOCK_K, BLOCK_N)).to(tl.float32, bitcast=True) - 8388608.0
        # (q - z) * s as one fused multiply-add per weight: q * s + (-z * s).
        if ONE_GROUP_PER_TILE:
            g = k0 // group_size
            s = tl.load(s_ptr + g * stride_sg + rn64, mask=n_ok, other=0.0).to(tl.float32)
            z = tl.load(z_ptr + g * stride_zg + rn64, mask=n_ok, other=0.0).to(tl.float32)
            w = q * s[None, :] - (z * s)[None, :]
        else:
            g = (tl.minimum(rk, K - 1) // group_size).to(tl.int64)
            gs_mask = k_ok[:, None] & n_ok[None, :]
            s = tl.load(s_ptr + g[:, None] * stride_sg + rn64[None, :], mask=gs_mask, other=0.0)
            z = tl.load(z_ptr + g[:, None] * stride_zg + rn64[None, :], mask=gs_mask, other=0.0)
            s = s.to(tl.float32)
            w = q * s - z.to(tl.float32) * s
        # Masked-off x columns are zero, so whatever w holds past K adds nothing.
        xk = tl.load(x_rows + rk[None, :], mask=m_ok[:, None] & k_ok[None, :], other=0.0)
        acc = tl.dot(xk, w.to(x_ptr.dtype.element_ty), acc, input_precision=PRECISION)
    out = out_ptr + pid_k.to(tl.int64) * stride_os + rm.to(tl.int64)[:, None] * stride_om + rn64[None, :]
    tl.store(out, acc.to(out_ptr.dtype.element_ty), mask=m_ok[:, None] & n_ok[None, :])


@triton.jit
def _quant_gemv_kernel(
    x_ptr, q_ptr, s_ptr, z_ptr, out_ptr,
    M, N, K, group_size, chunks_per_split,
    stride_xm, stride_qk, stride_sg, stride_zg, stride_os, stride_om,
    BITS: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):
    """The same product for a few rows without tensor cores: the dequantized tile stays in the
    registers it was unpacked into, in its [words, values per word, BLOCK_N] shape (no reshape,
    no shared-memory round trip into a dot operand), and each row adds x * w into fp32
    accumulators of that shape, reduced once at the end. One K chunk lies in one group."""
    PER_INT: tl.constexpr = 32 // BITS
    WORDS: tl.constexpr = BLOCK_K // PER_INT
    pid_n = tl.program_id(1)
    pid_k = tl.program_id(2)
    rn = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    n_ok = rn < N
    rn64 = rn.to(tl.int64)
    rm = tl.arange(0, BLOCK_M)
    m_ok = rm < M
    word = tl.arange(0, WORDS)
    lane = tl.arange(0, PER_INT)
    k_in_chunk = word[:, None] * PER_INT + lane[None, :]  # [WORDS, PER_INT]
    x_rows = x_ptr + rm.to(tl.int64)[:, None, None] * stride_xm
    acc = tl.zeros((BLOCK_M, WORDS, PER_INT, BLOCK_N), dtype=tl.float32)
    chunk_end = tl.minimum((pid_k + 1) * chunks_per_split, tl.cdiv(K, BLOCK_K))
    for chunk in range(pid_k * chunks_per_split, chunk_end):
        k0 = chunk * BLOCK_K
        rw = k0 // PER_INT + word
        words = tl.load(q_ptr + rw.to(tl.int64)[:, None] * stride_qk + rn64[None, :],
                        mask=(rw < K // PER_INT)[:, None] & n_ok[None, :], other=0,
                        eviction_policy="evict_first")
        q = ((words[:, None, :] >> (lane * BITS)[None, :, None]) & ((1 << BITS) - 1)) | 0x4B000000
        q = q.to(tl.float32, bitcast=True) - 8388608.0
        g = k0 // group_size
        s = tl.load(s_ptr + g * stride_sg + rn64, mask=n_ok, other=0.0).to(tl.float32)
        z = tl.load(z_ptr + g * stride_zg + rn64, mask=n_ok, other=0.0).to(tl.float32)
        w = q * s[None, None, :] - (z * s)[None, None, :]
        rk = k0 + k_in_chunk
        xk = tl.load(x_rows + rk[None, :, :], mask=m_ok[:, None, None] & (rk < K)[None, :, :],
                     other=0.0).to(tl.float32)
        acc += xk[:, :, :, None] * w[None, :, :, :]
    y = tl.sum(tl.sum(acc, 2), 1)
    out = out_ptr + pid_k.to(tl.int64) * stride_os + rm.to(tl.int64)[:, None] * stride_om + rn64[None, :]
    tl.store(out, y.to(out_ptr.dtype.element_ty), mask=m_ok[:, None] & n_ok[None, :])


def _check_config(config: QuantGemmConfig, bits: int) -> None:
    per_int = 32 // bits
    for name in ("block_m", "block_n", "block_k"):
        v = getattr(config, name)
        least = 1 if name == "block_m" and not config.use_dot else 16  # tl.dot's minimum
        if v < least or v & (v - 1):
            raise ValueError(f"quant_gemm: {name} must be a power of two >= {least}, got {v}")
    if config.block_k % per_int:
        raise ValueError(f"quant_gemm: block_k={config.block_k} must hold whole int32 words")
    if config.split_k < 1:
        raise ValueError(f"quant_gemm: split_k must be >= 1, got {config.split_k}")
    if not config.use_dot and config.block_m > FMA_MAX_M:
        raise ValueError(f"quant_gemm: the use_dot=False kernel takes block_m <= {FMA_MAX_M}, "
                         f"got {config.block_m}")


def quant_gemm(
    x: torch.Tensor,
    qweight: torch.Tensor,
    scales: torch.Tensor,
    zeros: torch.Tensor,
    bits: int,
    group_size: int,
    *,
    config: QuantGemmConfig | None = None,
) -> torch.Tensor:
    """``x @ w`` with ``w[k, n] = (q[k, n] - zeros[g, n]) * scales[g, n]``, g = k // group_size.

    Args:
        x: ``[M, K]`` fp16/bf16/fp32 (row stride free, contiguous along K).
        qweight: int32 ``[K * bits // 32, N]``, contiguous along N (see `quant_layout`).
        scales, zeros: ``[K // group_size, N]`` in x's dtype or fp16 (zeros in scales' dtype).
        bits: 4 or 8. group_size: 16, 32, 64, 128 or K (16: scales gathered per k row).
        config: launch shape; default the measured table, else `QuantGemmConfig.for_shape`.

    Returns:
        ``[M, N]`` in x's dtype, accumulated in fp32.
    """
    m, n, k = check_quant_args(x, qweight, scales, zeros, bits, group_size)
    for name, t in (("qweight", qweight), ("scales", scales), ("zeros", zeros)):
        if t.stride(1) != 1:
            raise ValueError(f"quant_gemm: {name} must be contiguous along N")
    check_device(x, qweight, scales, zeros)
    if x.stride(1) != 1:
        x = x.contiguous()
    if m == 0:
        return x.new_zeros(0, n)
    cfg = config or gemm_config(m, n, k, bits, group_size, x.device)
    _check_config(cfg, bits)
    per_split, split, out = split_output(triton.cdiv(k, cfg.block_k), cfg.split_k, m, n, x)
    one_group = group_size % cfg.block_k == 0 or group_size >= k
    extra = {} if interpreting() else dict(num_warps=cfg.num_warps, num_stages=cfg.num_stages)
    args = (x, qweight, scales, zeros, out, m, n, k, group_size, per_split,
            x.stride(0), qweight.stride(0), scales.stride(0), zeros.stride(0),
            out.stride(0) if split > 1 else 0, out.stride(-2))
    # The FMA kernel holds every row in its one row block and one group per K chunk; a call
    # it cannot take runs the dot kernel with the same columns and K chunks instead.
    if not cfg.use_dot and one_group and m <= cfg.block_m:
        grid = (1, triton.cdiv(n, cfg.block_n), split)
        _quant_gemv_kernel[grid](*args, BITS=bits, BLOCK_M=cfg.block_m, BLOCK_N=cfg.block_n,
                                 BLOCK_K=cfg.block_k, **extra)
    else:
        block_m = cfg.block_m if cfg.use_dot else 16
        grid = (triton.cdiv(m, block_m), triton.cdiv(n, cfg.block_n), split)
        _quant_gemm_kernel[grid](
            *args, BITS=bits, ONE_GROUP_PER_TILE=one_group, BLOCK_M=block_m,
            BLOCK_N=cfg.block_n, BLOCK_K=cfg.block_k, PRECISION=dot_precision(x.dtype), **extra)
    return sum_splits(out, x.dtype)
