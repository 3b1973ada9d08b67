"""RMSNorm, optionally fused with the residual add of a pre-norm block."""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from sglang.kernels._triton import check_device, interpreting, next_pow2, pdl_args, pdl_enter


@triton.jit
def _rmsnorm_kernel(
    X, R, W, Out, ResOut,
    stride_x, stride_r, stride_o, stride_ro,
    n_cols, eps,
    HAS_RESIDUAL: tl.constexpr, BLOCK: tl.constexpr, USE_PDL: tl.constexpr,
):
    pdl_enter(USE_PDL)
    row = tl.program_id(0).to(tl.int64)
    offs = tl.arange(0, BLOCK)
    mask = offs < n_cols
    x = tl.load(X + row * stride_x + offs, mask=mask, other=0.0).to(tl.float32)
    if HAS_RESIDUAL:
        summed = x + tl.load(R + row * stride_r + offs, mask=mask, other=0.0).to(tl.float32)
        # Normalise the sum as the caller will carry it (rounded to the activations' dtype).
        summed = summed.to(ResOut.dtype.element_ty)
        tl.store(ResOut + row * stride_ro + offs, summed, mask=mask)
        x = summed.to(tl.float32)
    rstd = tl.rsqrt(tl.sum(x * x, 0) / n_cols + eps)
    normed = (x * rstd).to(Out.dtype.element_ty).to(tl.float32)
    w = tl.load(W + offs, mask=mask, other=0.0).to(tl.float32)
    tl.store(Out + row * stride_o + offs, (normed * w).to(Out.dtype.element_ty), mask=mask)


def _rows(t: torch.Tensor) -> torch.Tensor:
    t = t.reshape(-1, t.shape[-1])
    return t if t.stride(-1) == 1 else t.contiguous()


def rmsnorm(
    x: torch.Tensor,
    weight: torch.Tensor,
    eps: float,
    residual: torch.Tensor | None = None,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Root-mean-square norm over the last dim: ``weight * x / sqrt(mean(x**2) + eps)``.

    Args:
        x: ``[..., hidden]`` fp32/fp16/bf16.
        weight: ``[hidden]``.
        eps: added to the mean square.
        residual: optional ``[..., hidden]`` like ``x``; when given the norm is applied to
            ``x + residual`` and that sum is returned too (the fused pre-norm residual add).

    Returns:
        ``out`` (``x``'s shape and dtype), or ``(out, x + residual)``. Statistics are computed in
        fp32; the normalised value is rounded to ``x``'s dtype before the weight multiplies it.
        The inputs are not modified.
    """
    hidden = x.shape[-1]
    if weight.shape != (hidden,):
        raise ValueError(f"weight {tuple(weight.shape)} does not match hidden size {hidden}")
    check_device(x, weight)
    x2 = _rows(x)
    out = torch.empty_like(x2)
    res_out = None
    if residual is not None:
        if residual.shape != x.shape:
            raise ValueError(f"residual {tuple(residual.shape)} differs from x {tuple(x.shape)}")
        r2 = _rows(residual)
        res_out = torch.empty_like(x2)
    else:
        r2 = x2
    rows = x2.shape[0]
    if rows:
        block = next_pow2(hidden)
        warps = 1 if interpreting() else min(max(block // 512, 1), 8)
        _rmsnorm_kernel[(rows,)](
            x2, r2, weight, out, res_out if res_out is not None else out,
            x2.stride(0), r2.stride(0), out.stride(0), out.stride(0),
            hidden, float(eps),
            HAS_RESIDUAL=residual is not None, BLOCK=block, num_warps=warps, **pdl_args(x2),
        )
    out = out.view(x.shape)
    if res_out is None:
        return out
    return out, res_out.view(x.shape)
