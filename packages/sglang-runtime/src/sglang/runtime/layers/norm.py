"""RMSNorm, optionally fused with the residual add that precedes it in pre-norm blocks.

On CUDA one Triton kernel (sglang-kernels) does the add and the norm; on the CPU in float32 one
C kernel (`rmsnorm_cpu`, one pass per row instead of torch's chain of elementwise ops, each
with its own dispatch and OpenMP fork: +5% end to end on SmolLM2 offline, with SiLU-and-mul;
docs/benchmarks.md); elsewhere torch ops."""

from __future__ import annotations

import torch
from torch import nn

import sglang.kernels as kernels
from sglang.runtime.distributed import all_reduce, get_tp_size
from sglang.runtime.layers.sharding import ShardSpec


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
        fused = kernels.rmsnorm_cpu(x, self.weight, self.eps, residual)
        if fused is not None:
            return fused
        if residual is None:
            return self._norm(x)
        summed = x + residual
        return self._norm(summed), summed


# --- fama: Gemma and LayerNorm families ---
class GemmaRMSNorm(RMSNorm):
    """Gemma's RMSNorm scales by (1 + weight), in float32 before the cast back (its checkpoints
    store the offset from one, initialised at zero)."""

    dummy_weight = 0.0

    def __init__(
        self, hidden_size: int, eps: float = 1e-6, dtype: torch.dtype | None = None
    ) -> None:
        super().__init__(hidden_size, eps, dtype)
        with torch.no_grad():
            self.weight.zero_()

    def _norm(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return (x32 * (1.0 + self.weight.float())).to(x.dtype)

    def forward(
        self, x: torch.Tensor, residual: torch.Tensor | None = None
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        if x.is_cuda:
            return kernels.rmsnorm(x, (1.0 + self.weight.float()).to(x.dtype), self.eps, residual)
        if residual is None:
            return self._norm(x)
        summed = x + residual
        return self._norm(summed), summed


class LayerNorm(RMSNorm):
    """LayerNorm (mean and variance in float32), with an optional bias: Command-R has none,
    StableLM has one. Same residual-fused call as RMSNorm."""

    def __init__(
        self, hidden_size: int, eps: float = 1e-5, dtype: torch.dtype | None = None,
        bias: bool = False,
    ) -> None:
        super().__init__(hidden_size, eps, dtype)
        self.bias = (
            nn.Parameter(torch.zeros(hidden_size, dtype=dtype), requires_grad=False)
            if bias else None
        )

    def _norm(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        bias = None if self.bias is None else self.bias.float()
        out = torch.nn.functional.layer_norm(
            x32, x32.shape[-1:], self.weight.float(), bias, self.eps
        )
        return out.to(x.dtype)

    def forward(
        self, x: torch.Tensor, residual: torch.Tensor | None = None
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        if residual is None:
            return self._norm(x)
        summed = x + residual
        return self._norm(summed), summed


class ShardedRMSNorm(RMSNorm):
    """RMSNorm over a feature axis split across tensor-parallel ranks (OLMo 2's q/k norms over
    the whole projection): this rank holds features [start, start + size) of `full`, and the
    mean square is summed over the ranks. Replicated KV heads are counted on every rank that
    holds them, and so is their share of the count, which leaves the mean unchanged."""

    def __init__(
        self, full: int, start: int, size: int, eps: float = 1e-6,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(size, eps, dtype)
        self.full, self.start = full, start

    def shard_spec(self, param_name: str, shard_id: str | None = None) -> ShardSpec:
        return ShardSpec(self.weight.data, 0, self.start, self.weight.shape[0], self.full)

    def forward(  # type: ignore[override]
        self, x: torch.Tensor, residual: None = None
    ) -> torch.Tensor:
        x32 = x.float()
        if get_tp_size() == 1:
            mean_sq = x32.pow(2).mean(-1, keepdim=True)
        else:
            count = torch.full_like(x32[..., :1], float(x32.shape[-1]))
            stats = all_reduce(torch.cat((x32.pow(2).sum(-1, keepdim=True), count), -1))
            mean_sq = stats[..., :1] / stats[..., 1:]
        return (self.weight * (x32 * torch.rsqrt(mean_sq + self.eps)).to(x.dtype))


def head_layer_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """Bias-free LayerNorm of each head of x ([tokens, heads * head_dim]) in float32, scaled by
    that head's row of `weight` ([heads, head_dim]): Command R+'s and StableLM's q/k norms."""
    heads, head_dim = weight.shape
    out = torch.nn.functional.layer_norm(x.float().view(-1, heads, head_dim), (head_dim,),
                                         None, None, eps)
    return (out * weight.float()).to(x.dtype).flatten(1)
