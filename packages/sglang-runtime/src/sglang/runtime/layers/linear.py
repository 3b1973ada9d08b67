"""Linear projections, including fused ones that hold several checkpoint matrices in one weight,
split across tensor-parallel ranks.

Fusing q/k/v (and gate/up) turns three (two) matmuls into one, which matters most for small
decode batches. Each fused layer knows where every checkpoint shard lives in its weight rows
(`shard_rows`) and which rows of the checkpoint this rank keeps (`shard_specs`).

Tensor parallelism (Megatron-style): a column-parallel layer keeps a slice of the output rows, so
each rank computes its slice of y with no communication; the row-parallel layer after it keeps
the matching input columns and sums the partial results over the ranks (one all-reduce per
attention block and per MLP). Every local matmul is `Linear.forward`, so its fast paths apply.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from sglang.runtime.distributed import all_reduce, get_tp_rank, get_tp_size
from sglang.runtime.layers import gemm
from sglang.runtime.layers.quantization.base import OutSegments, QuantLinearMethod
from sglang.runtime.layers.quantization.build import dense_placeholder
from sglang.runtime.layers.sharding import HeadSplit, ShardSpec, even_range


def _param(*shape: int, dtype: torch.dtype | None, meta: bool = False) -> nn.Parameter:
    # Weights are filled by the loader; inference never needs gradients. A quantized model
    # builds its Linears' weights on "meta" (no memory) until their method replaces them.
    device = torch.device("meta") if meta else None
    return nn.Parameter(torch.empty(*shape, dtype=dtype, device=device), requires_grad=False)


class Linear(nn.Module):
    """y = x W^T (+ b), weight stored as [out_features, in_features] like checkpoints; or,
    with a `quant_method` (quantized checkpoints), its packed tensors and matmul instead."""

    quant_method: QuantLinearMethod | None = None

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
        self.weight: nn.Parameter | None = _param(
            out_features, in_features, dtype=dtype, meta=dense_placeholder()
        )
        self.bias = _param(out_features, dtype=dtype) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.quant_method is not None:
            return self.quant_method.apply(self, x)
        return gemm.linear(x, self.weight, self.bias)

    def quant_geometry(self) -> tuple[int, tuple[int, int] | None, OutSegments]:
        """(checkpoint input features, this rank's (first, count) of them when split, output
        segments): what a quantization method needs to shard its packed tensors."""
        n = self.out_features
        return self.in_features, None, {None: (0, n, 0, n)}

    def shard_spec(self, param_name: str, shard_id: str | None = None) -> ShardSpec | None:
        """Where checkpoint tensor `param_name` goes on this rank; None: this rank skips it."""
        return ShardSpec(dest=self._named_param(param_name))

    def _named_param(self, name: str) -> torch.Tensor:
        param = self._parameters.get(name)
        if param is None:
            raise KeyError(f"checkpoint has a {name!r} for a {type(self).__name__} without one")
        return param


class ColumnParallelLinear(Linear):
    """Output features split over the ranks in contiguous runs (sizes differing by at most
    one): rank r keeps checkpoint rows [out_start, out_start + out_features)."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = False,
        dtype: torch.dtype | None = None,
    ) -> None:
        rank, tp = get_tp_rank(), get_tp_size()
        start, local = even_range(out_features, tp, rank)
        super().__init__(in_features, local, bias, dtype)
        self.tp_rank, self.tp_size = rank, tp
        self.out_start, self.full_out_features = start, out_features

    def shard_spec(self, param_name: str, shard_id: str | None = None) -> ShardSpec | None:
        n = self.out_features
        param = self._named_param(param_name)
        return ShardSpec(param, 0, self.out_start, n, self.full_out_features)

    def quant_geometry(self) -> tuple[int, tuple[int, int] | None, OutSegments]:
        n = self.out_features
        return self.in_features, None, {None: (0, n, self.out_start, self.full_out_features)}


class RowParallelLinear(Linear):
    """Input features split over the ranks to match the column-parallel layer before it
    (`in_range`: this rank's (start, size); default the same split as ColumnParallelLinear);
    the partial products are summed with one all-reduce. Only rank 0 adds the bias."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = False,
        dtype: torch.dtype | None = None,
        in_range: tuple[int, int] | None = None,
    ) -> None:
        rank, tp = get_tp_rank(), get_tp_size()
        start, local = in_range or even_range(in_features, tp, rank)
        super().__init__(local, out_features, bias and rank == 0, dtype)
        self.tp_rank, self.tp_size = rank, tp
        self.in_start, self.full_in_features = start, in_features
        self.has_bias = bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return all_reduce(super().forward(x))

    def shard_spec(self, param_name: str, shard_id: str | None = None) -> ShardSpec | None:
        if param_name == "bias":
            # Every rank reads past it but rank 0, which adds it once after the reduction.
            skip = self.has_bias and self.tp_rank != 0
            return None if skip else ShardSpec(self._named_param("bias"))
        param = self._named_param(param_name)
        return ShardSpec(param, 1, self.in_start, self.in_features, self.full_in_features)

    def quant_geometry(self) -> tuple[int, tuple[int, int] | None, OutSegments]:
        n = self.out_features
        split = (self.in_start, self.in_features)
        return self.full_in_features, split, {None: (0, n, 0, n)}


class MergedLinear(ColumnParallelLinear):
    """Several column-parallel projections of the same input stacked along the output rows.

    `shards` maps a checkpoint shard id to its checkpoint row count (split over the ranks like
    ColumnParallelLinear) or to (rows this rank keeps, first checkpoint row it keeps, checkpoint rows in all).
    Each rank's weight is [its rows of shard 1; its rows of shard 2; ...].
    """

    def __init__(
        self,
        in_features: int,
        shards: Mapping[str, int | tuple[int, int, int]],
        bias: bool = False,
        dtype: torch.dtype | None = None,
    ) -> None:
        rank, tp = get_tp_rank(), get_tp_size()
        geometry: dict[str, tuple[int, int, int]] = {}
        for shard_id, shard in shards.items():
            if isinstance(shard, int):
                start, n = even_range(shard, tp, rank)
                shard = (n, start, shard)
            geometry[shard_id] = shard
        total = sum(size for size, _, _ in geometry.values())
        # The Linear holds `total` local rows; the per-shard geometry below places them.
        Linear.__init__(self, in_features, total, bias, dtype)
        self.tp_rank, self.tp_size = rank, tp
        self.out_start, self.full_out_features = 0, total
        self.shard_rows: dict[str, tuple[int, int]] = {}
        self._sources: dict[str, tuple[int, int]] = {}
        offset = 0
        for shard_id, (size, start, full) in geometry.items():
            self.shard_rows[shard_id] = (offset, size)
            self._sources[shard_id] = (start, full)
            offset += size

    def shard_spec(self, param_name: str, shard_id: str | None = None) -> ShardSpec | None:
        if shard_id not in self.shard_rows:
            raise KeyError(f"{type(self).__name__} has no shard {shard_id!r}")
        param = self._named_param(param_name)
        offset, size = self.shard_rows[shard_id]
        start, full = self._sources[shard_id]
        return ShardSpec(param.data[offset : offset + size], 0, start, size, full)

    def quant_geometry(self) -> tuple[int, tuple[int, int] | None, OutSegments]:
        segments: OutSegments = {
            shard: (offset, size, *self._sources[shard])
            for shard, (offset, size) in self.shard_rows.items()
        }
        return self.in_features, None, segments

    def load_shard(self, shard_id: str, param_name: str, tensor: torch.Tensor) -> None:
        """Copy this rank's rows of one checkpoint matrix (or bias) into the fused parameter."""
        spec = self.shard_spec(param_name, shard_id)
        assert spec is not None and spec.dim is not None
        if tensor.shape[0] != spec.full:
            raise ValueError(f"shard {shard_id!r}: expected {spec.full} rows, got {tensor.shape[0]}")
        spec.dest.copy_(tensor.narrow(0, spec.start, spec.size))

    def split(self, y: torch.Tensor) -> tuple[torch.Tensor, ...]:
        sizes = [size for _, size in self.shard_rows.values()]
        return tuple(y.split(sizes, dim=-1))


class QKVLinear(MergedLinear):
    """[q; k; v] projection for grouped-query attention; each rank holds its query heads and the
    KV heads they attend to (replicated when tp_size > num_kv_heads). `num_heads` and
    `num_kv_heads` are the local counts."""

    def __init__(
        self,
        hidden_size: int,
        head_dim: int,
        num_heads: int,
        num_kv_heads: int,
        bias: bool = False,
        dtype: torch.dtype | None = None,
    ) -> None:
        heads = HeadSplit.of(num_heads, num_kv_heads, get_tp_rank(), get_tp_size())
        q = (heads.num_heads * head_dim, heads.q_start * head_dim, num_heads * head_dim)
        kv = (heads.num_kv_heads * head_dim, heads.kv_start * head_dim, num_kv_heads * head_dim)
        super().__init__(hidden_size, {"q": q, "k": kv, "v": kv}, bias, dtype)
        self.num_heads = heads.num_heads
        self.num_kv_heads = heads.num_kv_heads
        self.head_dim = head_dim
        # The o_proj columns (attention output features) this rank's query heads produce.
        self.q_columns = (heads.q_start * head_dim, heads.num_heads * head_dim)


class GateUpLinear(MergedLinear):
    """[gate; up] projection of a gated MLP; pairs with SiluAndMul (each rank's gate and up
    rows match, so the activation needs no communication)."""

    def __init__(
        self,
        hidden_size: int,
        intermediate_size: int,
        bias: bool = False,
        dtype: torch.dtype | None = None,
    ) -> None:
        sizes = {"gate": intermediate_size, "up": intermediate_size}
        super().__init__(hidden_size, sizes, bias, dtype)
