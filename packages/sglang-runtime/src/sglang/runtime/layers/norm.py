"""RMSNorm, optionally fused with the residual add that precedes it in pre-norm blocks.

On CUDA one Triton kernel (sglang-kernels) does the add and the norm; elsewhere torch ops."""

from __future__ import annotations

import torch
from torch import nn

import sglang.kernels as kernels


class RMSNorm(nn.Module):
    def __init__(
        self, hidden_size: int, eps: float = 1e-6, dtype: torch.dtype | None = None
    ) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(hidden_size, dtype=dtype), requires_grad=False)

    def _norm(self, x: torch.Tensor) -> torch.Tensor:
        # Statistics in float32 so bf16/fp16 activations don't lose the variance.
        x32 = x.float()
        x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x32.to(x.dtype)

    def forward(
        self, x: torch.Tensor, residual: torch.Tensor | None = None
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Without `residual`: norm(x). With it: (norm(x + residual), x + residual), so the
        caller carries the un-normalized sum into the next block."""
        if x.is_cuda:
            return kernels.rmsnorm(x, self.weight, self.eps, residual)
        if residual is None:
            return self._norm(x)
        summed = x + residual
        return self._norm(summed), summed
