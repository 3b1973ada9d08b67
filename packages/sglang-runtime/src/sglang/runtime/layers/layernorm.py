"""LayerNorm with the RMSNorm calling convention, for families whose decoder uses LayerNorm
(DBRX: no bias)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class LayerNorm(nn.LayerNorm):
    """Without `residual`: norm(x). With it: (norm(x + residual), x + residual). Statistics in
    float32, like RMSNorm, so half-precision activations keep their variance."""

    def __init__(self, hidden_size: int, eps: float = 1e-5, bias: bool = False,
                 dtype: torch.dtype | None = None) -> None:
        super().__init__(hidden_size, eps=eps, bias=bias, dtype=dtype)
        for p in self.parameters():
            p.requires_grad_(False)

    def _norm(self, x: torch.Tensor) -> torch.Tensor:
        bias = None if self.bias is None else self.bias.float()
        out = F.layer_norm(x.float(), self.normalized_shape, self.weight.float(), bias, self.eps)
        return out.to(x.dtype)

    def forward(  # type: ignore[override]
        self, x: torch.Tensor, residual: torch.Tensor | None = None
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        if residual is None:
            return self._norm(x)
        summed = x + residual
        return self._norm(summed), summed
