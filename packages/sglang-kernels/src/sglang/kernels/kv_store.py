"""Write new tokens' K/V into a layer's token-level KV pool."""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from sglang.kernels._triton import (
    check_device,
    interpreting,
    next_pow2,
    pdl_args,
    pdl_enter,
)


@triton.jit
def _store_kv_kernel(
    K, V, Loc, KBuf, VBuf,
    stride_kt, stride_kh, stride_vt, stride_vh,
    stride_kbt, stride_kbh, stride_vbt, stride_vbh, k_scale, v_scale,
    QUANT: tl.constexpr, FP8_MAX: tl.constexpr, MANT_BITS: tl.constexpr, MIN_EXP: tl.constexpr,
    NUM_HEADS: tl.constexpr, HEAD_DIM: tl.constexpr,
    BLOCK_H: tl.constexpr, BLOCK_D: tl.constexpr, USE_PDL: tl.constexpr,
):
    pdl_enter(USE_PDL)
    token = tl.program_id(0).to(tl.int64)
    slot = tl.load(Loc + token).to(tl.int64)
    offs_h = tl.arange(0, BLOCK_H)
    offs_d = tl.arange(0, BLOCK_D)
    mask = (offs_h < NUM_HEADS)[:, None] & (offs_d < HEAD_DIM)[None, :]
    k = tl.load(K + token * stride_kt + offs_h[:, None] * stride_kh + offs_d[None, :], mask=mask)
    v = tl.load(V + token * stride_vt + offs_h[:, None] * stride_vh + offs_d[None, :], mask=mask)
    if QUANT:
        k = fp8_quantize(k, k_scale, FP8_MAX, MANT_BITS, MIN_EXP)
        v = fp8_quantize(v, v_scale, FP8_MAX, MANT_BITS, MIN_EXP)
    tl.store(KBuf + slot * stride_kbt + offs_h[:, None] * stride_kbh + offs_d[None, :],
             k.to(KBuf.dtype.element_ty), mask=mask)
    tl.store(VBuf + slot * stride_vbt + offs_h[:, None] * stride_vbh + offs_d[None, :],
             v.to(VBuf.dtype.element_ty), mask=mask)


@triton.jit
def fp8_quantize(x, scale, FP8_MAX: tl.constexpr, MANT_BITS: tl.constexpr,
                 MIN_EXP: tl.constexpr):
    """``x / scale`` in fp32, saturated to the fp8 format's finite range and rounded to its grid
    (nearest even), so the caller's store into the fp8 buffer is exact.

    Rounding here instead of in the cast: Triton's CPU interpreter rounds fp32 -> fp8 wrongly
    when the mantissa carries into the exponent (31.7 became 16, not 32), and on the GPU the
    few integer ops are free in this memory-bound kernel. Adding then subtracting
    ``1.5 * 2^(e + 23)`` rounds to a multiple of ``2^e`` (fp32 addition rounds to nearest
    even), ``e`` the step of x's binade: exponent - MANT_BITS, subnormals sharing MIN_EXP's.
    """
    y = tl.clamp(x.to(tl.float32) / scale, -FP8_MAX, FP8_MAX)
    exp = ((y.to(tl.int32, bitcast=True) >> 23) & 0xFF) - 127
    step_exp = tl.maximum(exp, MIN_EXP) - MANT_BITS
    magic = (((step_exp + 23 + 127) << 23) | (1 << 22)).to(tl.float32, bitcast=True)
    r = (y + magic) - magic
    # The sum loses the sign of values that round to zero; keep -0.0 as the cast would.
    return tl.where(r == 0.0, y * 0.0, r)


# fp8 dtype -> (largest finite value, mantissa bits, smallest normal exponent)
FP8_FORMATS = {
    torch.float8_e4m3fn: (448.0, 3, -6),
    torch.float8_e5m2: (57344.0, 2, -14),
}


def fp8_args(buffer: torch.Tensor) -> dict[str, object]:
    """Launch arguments of `fp8_quantize` for a KV buffer; QUANT is False for non-fp8 ones."""
    fmt = FP8_FORMATS.get(buffer.dtype)
    if fmt is None:
        return {"QUANT": False, "FP8_MAX": 0.0, "MANT_BITS": 0, "MIN_EXP": 0}
    return {"QUANT": True, "FP8_MAX": fmt[0], "MANT_BITS": fmt[1], "MIN_EXP": fmt[2]}


def check_kv_shapes(
    k_buffer: torch.Tensor, v_buffer: torch.Tensor, k: torch.Tensor, v: torch.Tensor
) -> None:
    """New tokens' K and V must match each other and the pool's per-slot shape."""
    if v.shape != k.shape or k_buffer.shape[1:] != k.shape[1:] or v_buffer.shape[1:] != k.shape[1:]:
        raise ValueError(
            f"shape mismatch: k {tuple(k.shape)}, v {tuple(v.shape)}, "
            f"k_buffer {tuple(k_buffer.shape)}, v_buffer {tuple(v_buffer.shape)}"
        )


def store_kv(
    k_buffer: torch.Tensor,
    v_buffer: torch.Tensor,
    loc: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    k_scale: float = 1.0,
    v_scale: float = 1.0,
) -> None:
    """``k_buffer[loc] = k; v_buffer[loc] = v`` in one launch, casting to the pool's dtype.

    With fp8 buffers (float8_e4m3fn / float8_e5m2) the stored values are
    ``clamp(x / scale, -max, max)`` rounded to nearest even, `k_scale`/`v_scale` the layer's
    scales (ignored for other dtypes); readers multiply by the same scales.

    Args:
        k_buffer, v_buffer: ``[num_slots, num_kv_heads, head_dim]`` KV pool of one layer
            (fp32/fp16/bf16/fp8), written in place.
        loc: ``[num_tokens]`` int32/int64 slot of each new token (distinct slots).
        k, v: ``[num_tokens, num_kv_heads, head_dim]``, any float dtype; views with a contiguous
            last dim (e.g. slices of a fused QKV output) are fine.
    """
    num_tokens, num_heads, head_dim = k.shape
    check_kv_shapes(k_buffer, v_buffer, k, v)
    if num_tokens == 0:
        return
    check_device(k_buffer, v_buffer, loc, k, v)
    k = k if k.stride(-1) == 1 else k.contiguous()
    v = v if v.stride(-1) == 1 else v.contiguous()
    _store_kv_kernel[(num_tokens,)](
        k, v, loc, k_buffer, v_buffer,
        k.stride(0), k.stride(1), v.stride(0), v.stride(1),
        k_buffer.stride(0), k_buffer.stride(1), v_buffer.stride(0), v_buffer.stride(1),
        float(k_scale), float(v_scale), **fp8_args(k_buffer), NUM_HEADS=num_heads, HEAD_DIM=head_dim,
        BLOCK_H=next_pow2(num_heads), BLOCK_D=next_pow2(head_dim), **pdl_args(k),
        num_warps=1 if interpreting() else 4,
    )
