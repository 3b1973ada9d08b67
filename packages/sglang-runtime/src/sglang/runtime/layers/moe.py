"""Mixture-of-experts MLP: a top-k router and stacked SwiGLU experts, split across
tensor-parallel ranks along each expert's intermediate dimension.

Experts are held as two stacked weights, `w13` [E, 2*I, H] (each expert's [gate; up] rows) and
`w2` [E, H, I], so the fused CUDA kernel reads one tensor per GEMM and a checkpoint's per-expert
matrices each land in their slice (`shard_spec(param, "gate:3")`), or a whole stacked tensor
(GGUF, DBRX) in one copy (`shard_spec(param, "gate")`).

Tensor parallelism: like a gated MLP, each rank keeps the same slice of every expert's
intermediate features (gate/up rows are column-parallel, down columns row-parallel), so a rank
computes a partial sum of every expert's output and one all-reduce per layer completes it; the
router is replicated and every rank routes identically.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

import sglang.kernels as kernels
from sglang.runtime.distributed import all_reduce, get_tp_rank, get_tp_size
from sglang.runtime.layers.linear import Linear
from sglang.runtime.layers.sharding import ShardSpec, even_range

# Checkpoint shard id -> (our parameter, which half of w13 or None for w2).
_SHARDS: dict[str, tuple[str, int | None]] = {"gate": ("w13", 0), "up": ("w13", 1), "down": ("w2", None)}


@dataclass(frozen=True)
class RouterSpec:
    """How a family turns router logits into expert weights: softmax over all experts, the top
    k kept, then (renorm_p set) divided by their p-norm (Mixtral, DBRX's default: p = 1, i.e.
    they sum to one; Qwen-MoE only with `norm_topk_prob`)."""

    top_k: int
    renorm_p: float | None = 1.0


def route(logits: torch.Tensor, spec: RouterSpec) -> tuple[torch.Tensor, torch.Tensor]:
    """(weights fp32 [T, k], expert ids [T, k]) from router logits [T, E]."""
    probs = torch.softmax(logits.float(), dim=-1)
    weights, ids = torch.topk(probs, spec.top_k, dim=-1)
    if spec.renorm_p is not None:
        weights = weights / torch.linalg.vector_norm(weights, ord=spec.renorm_p, dim=-1, keepdim=True)
    return weights, ids


class StackedExperts(nn.Module):
    """E SwiGLU experts; this rank's intermediate slice of each. `forward` returns this rank's
    partial sum (the caller all-reduces)."""

    def __init__(self, num_experts: int, hidden_size: int, intermediate_size: int,
                 dtype: torch.dtype | None = None) -> None:
        super().__init__()
        rank, tp = get_tp_rank(), get_tp_size()
        self.inter_start, self.inter = even_range(intermediate_size, tp, rank)
        self.num_experts, self.full_inter = num_experts, intermediate_size
        self.w13 = nn.Parameter(torch.empty(num_experts, 2 * self.inter, hidden_size, dtype=dtype),
                                requires_grad=False)
        self.w2 = nn.Parameter(torch.empty(num_experts, hidden_size, self.inter, dtype=dtype),
                               requires_grad=False)

    def shard_spec(self, param_name: str, shard_id: str | None = None) -> ShardSpec | None:
        """`shard_id` "gate" | "up" | "down", optionally ":<expert>" for one expert's matrix."""
        kind, _, expert = (shard_id or "").partition(":")
        if kind not in _SHARDS or _SHARDS[kind][0] != param_name:
            raise KeyError(f"experts have no {param_name!r} shard {shard_id!r}")
        param = self.w13 if param_name == "w13" else self.w2
        dest = param.data if not expert else param.data[int(expert)]
        lead = 0 if expert else 1  # an expert's matrix lost the leading E dimension
        half = _SHARDS[kind][1]
        if half is None:  # down: [.., H, I] keeps its columns of I
            return ShardSpec(dest, lead + 1, self.inter_start, self.inter, self.full_inter)
        rows = dest.narrow(lead, half * self.inter, self.inter)
        return ShardSpec(rows, lead, self.inter_start, self.inter, self.full_inter)

    def expected_shards(self, param_name: str) -> list[str]:
        kinds = [k for k, (p, _) in _SHARDS.items() if p == param_name]
        return [f"{k}:{e}" for k in kinds for e in range(self.num_experts)]

    def shard_keys(self, shard_id: str) -> list[str]:
        """The per-expert shards a loaded shard covers (a stacked one covers all)."""
        if ":" in shard_id:
            return [shard_id]
        return [f"{shard_id}:{e}" for e in range(self.num_experts)]

    def stacked_shards(self) -> list[str]:
        return list(_SHARDS)

    def forward(self, x: torch.Tensor, weights: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        if x.is_cuda:
            return kernels.fused_moe(x, self.w13, self.w2, weights, ids)
        return grouped_experts(x, self.w13, self.w2, weights, ids)


def grouped_experts(
    x: torch.Tensor, w13: torch.Tensor, w2: torch.Tensor, weights: torch.Tensor, ids: torch.Tensor
) -> torch.Tensor:
    """The CPU path: (token, slot) pairs sorted by expert, one pair of matmuls per expert that
    has any, results scattered back with their router weights."""
    top_k = ids.shape[1]
    flat = ids.reshape(-1)
    order = torch.argsort(flat, stable=True)
    counts = torch.bincount(flat, minlength=w13.shape[0]).tolist()
    pair_weights = weights.reshape(-1)
    out = torch.zeros_like(x)
    start = 0
    for expert, n in enumerate(counts):
        if n == 0:
            continue
        pairs = order[start : start + n]
        start += n
        tokens = pairs // top_k
        gate, up = F.linear(x[tokens], w13[expert]).chunk(2, dim=-1)
        y = F.linear(F.silu(gate) * up, w2[expert])
        out.index_add_(0, tokens, (y * pair_weights[pairs, None]).to(x.dtype))
    return out


class SparseMoeBlock(nn.Module):
    """Router (`gate`, replicated) + experts; the output all-reduced over the ranks."""

    def __init__(self, hidden_size: int, num_experts: int, intermediate_size: int,
                 router: RouterSpec, dtype: torch.dtype | None = None) -> None:
        super().__init__()
        self.router = router
        self.gate = Linear(hidden_size, num_experts, False, dtype)
        self.experts = StackedExperts(num_experts, hidden_size, intermediate_size, dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights, ids = route(self.gate(x), self.router)
        return all_reduce(self.experts(x, weights, ids))
