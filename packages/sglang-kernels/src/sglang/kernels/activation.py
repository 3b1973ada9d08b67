"""Gated activations over a fused ``[gate; up]`` projection: ``act(gate) * up``."""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from sglang.kernels._triton import check_device, interpreting, next_pow2, pdl_args, pdl_enter

# gelu_and_mul's `approximate` -> the kernel's activation name.
_GELU = {"none": "gelu", "tanh": "gelu_tanh"}


@triton.jit
def _gated_kernel(
    X, Out, stride_x, stride_o, d,
    ACT: tl.constexpr, BLOCK: tl.constexpr, USE_PDL: tl.constexpr,
):
    pdl_enter(USE_PDL)
    row = tl.program_id(0).to(tl.int64)
    offs = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < d
    gate = tl.load(X + row * stride_x + offs, mask=mask, other=0.0).to(tl.float32)
    up = tl.load(X + row * stride_x + d + offs, mask=mask, other=0.0).to(tl.float32)
    if ACT == "silu":
        act = gate * tl.sigmoid(gate)
    elif ACT == "gelu":
        act = 0.5 * gate * (1.0 + tl.erf(gate * 0.7071067811865476))
    else:
        inner = 0.7978845608028654 * (gate + 0.044715 * gate * gate * gate)
        # 0.5 * (1 + tanh(y)) == sigmoid(2y); the floor only keeps exp() from overflowing
        # where the result is 0 anyway.
        act = gate * tl.sigmoid(tl.maximum(2.0 * inner, -80.0))
    tl.store(Out + row * stride_o + offs, (act * up).to(Out.dtype.element_ty), mask=mask)


def _gated(x: torch.Tensor, act: str) -> torch.Tensor:
    if x.shape[-1] % 2:
        raise ValueError(f"last dim must be even ([gate; up]), got {x.shape[-1]}")
    check_device(x)
    d = x.shape[-1] // 2
    x2 = x.reshape(-1, x.shape[-1])
    if x2.stride(-1) != 1:
        x2 = x2.contiguous()
    out = torch.empty((x2.shape[0], d), dtype=x.dtype, device=x.device)
    if out.numel():
        block = min(next_pow2(d), 1024)
        grid = (x2.shape[0], triton.cdiv(d, block))
        _gated_kernel[grid](
            x2, out, x2.stride(0), out.stride(0), d, ACT=act, BLOCK=block, **pdl_args(x2),
            num_warps=1 if interpreting() else 4,
        )
    return out.view(*x.shape[:-1], d)


def silu_and_mul(x: torch.Tensor) -> torch.Tensor:
    """``silu(x[..., :d]) * x[..., d:]`` for ``x`` of ``[..., 2*d]`` (fp32/fp16/bf16) →
    ``[..., d]`` in ``x``'s dtype, computed in fp32."""
    return _gated(x, "silu")


def gelu_and_mul(x: torch.Tensor, approximate: str = "none") -> torch.Tensor:
    """``gelu(x[..., :d]) * x[..., d:]`` for ``x`` of ``[..., 2*d]`` → ``[..., d]``.
    ``approximate``: ``"none"`` (erf) or ``"tanh"``, as in ``torch.nn.functional.gelu``."""
    if approximate not in _GELU:
        raise ValueError(f"approximate must be 'none' or 'tanh', got {approximate!r}")
    return _gated(x, _GELU[approximate])
