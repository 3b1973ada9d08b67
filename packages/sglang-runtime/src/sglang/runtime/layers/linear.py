"""Linear projections, including fused ones that hold several checkpoint matrices in one weight.

Fusing q/k/v (and gate/up) turns three (two) matmuls into one, which matters most for small
decode batches. Each fused layer knows where every checkpoint shard lives in its weight rows
(`shard_rows`), which is also the hook tensor parallelism will use to slice per rank.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _param(*shape: int, dtype: torch.dtype | None) -> nn.Parameter:
    # Weights are filled by the loader; inference never needs gradients.
    return nn.Parameter(torch.empty(*shape, dtype=dtype), requires_grad=False)


class Linear(nn.Module):
    """y = x W^T (+ b), weight stored as [out_features, in_features] like checkpoints."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = False,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.weight = _param(out_features, in_features, dtype=dtype)
        self.bias = _param(out_features, dtype=dtype) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias)


class MergedLinear(Linear):
    """Several projections of the same input stacked along the output rows."""

    def __init__(
        self,
        in_features: int,
        shard_sizes: dict[str, int],
        bias: bool = False,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(in_features, sum(shard_sizes.values()), bias, dtype)
        self.shard_rows: dict[str, tuple[int, int]] = {}
        offset = 0
        for shard_id, size in shard_sizes.items():
            self.shard_rows[shard_id] = (offset, size)
            offset += size

    def load_shard(self, shard_id: str, param_name: str, tensor: torch.Tensor) -> None:
        """Copy one checkpoint matrix (or bias) into its rows of the fused parameter."""
        param = self.weight if param_name == "weight" else self.bias
        if param is None:
            raise ValueError(f"checkpoint has a {param_name} for a layer built without one")
        offset, size = self.shard_rows[shard_id]
        if tensor.shape[0] != size:
            raise ValueError(f"shard {shard_id!r}: expected {size} rows, got {tensor.shape[0]}")
        param.data[offset : offset + size].copy_(tensor)

    def split(self, y: torch.Tensor) -> tuple[torch.Tensor, ...]:
        sizes = [size for _, size in self.shard_rows.values()]
        return tuple(y.split(sizes, dim=-1))


class QKVLinear(MergedLinear):
    """[q; k; v] projection for grouped-query attention."""

    def __init__(
        self,
        hidden_size: int,
        head_dim: int,
        num_heads: int,
        num_kv_heads: int,
        bias: bool = False,
        dtype: torch.dtype | None = None,
    ) -> None:
        q_size, kv_size = num_heads * head_dim, num_kv_heads * head_dim
        super().__init__(hidden_size, {"q": q_size, "k": kv_size, "v": kv_size}, bias, dtype)


class GateUpLinear(MergedLinear):
    """[gate; up] projection of a gated MLP; pairs with SiluAndMul."""

    def __init__(
        self,
        hidden_size: int,
        intermediate_size: int,
        bias: bool = False,
        dtype: torch.dtype | None = None,
    ) -> None:
        sizes = {"gate": intermediate_size, "up": intermediate_size}
        super().__init__(hidden_size, sizes, bias, dtype)


class Embedding(nn.Module):
    """Token embedding table; its weight may double as the LM head (tied embeddings)."""

    def __init__(self, vocab_size: int, hidden_size: int, dtype: torch.dtype | None = None) -> None:
        super().__init__()
        self.weight = _param(vocab_size, hidden_size, dtype=dtype)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return F.embedding(ids, self.weight)
