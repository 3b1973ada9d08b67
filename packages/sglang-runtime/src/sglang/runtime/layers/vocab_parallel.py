"""Vocabulary-parallel token embedding and LM head.

Rank r holds vocabulary rows [r*n, (r+1)*n) with n = ceil(vocab / tp) (the last rank's tail is
zero padding). The embedding looks up the ids in its range, zeroes the rest and sums over the
ranks; the LM head multiplies by its rows (`project`) and `LogitsProcessor` gathers the slices.
A tied LM head is the embedding itself, so it is split the same way.

With a `quant_method` (GGUF weights kept packed) the table is a packed [hidden, rows] matrix:
lookups dequantize only the gathered rows, and `project` is the quantized matmul.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from sglang.runtime.distributed import all_reduce, get_tp_rank, get_tp_size
from sglang.runtime.layers import gemm
from sglang.runtime.layers.quantization.build import embedding_placeholder
from sglang.runtime.layers.sharding import ShardSpec


class VocabParallelEmbedding(nn.Module):
    quant_method: Any = None  # GGUFPackedMethod when the table is kept packed

    def __init__(self, vocab_size: int, hidden_size: int, dtype: torch.dtype | None = None) -> None:
        super().__init__()
        rank, tp = get_tp_rank(), get_tp_size()
        self.vocab_size = vocab_size
        self.embedding_dim = hidden_size
        self.tp_size = tp
        self.rows_per_rank = -(-vocab_size // tp)
        self.vocab_start = min(rank * self.rows_per_rank, vocab_size)
        self.vocab_end = min(self.vocab_start + self.rows_per_rank, vocab_size)
        # Padding rows must be zero (not garbage) in case anything reads them: the loaders
        # only fill the real rows. A packed table is filled at load (no float copy, "meta").
        shape = (self.rows_per_rank, hidden_size)
        table = (torch.empty(shape, dtype=dtype, device="meta") if embedding_placeholder()
                 else torch.zeros(shape, dtype=dtype))
        self.weight: nn.Parameter | None = nn.Parameter(table, requires_grad=False)

    def _lookup(self, ids: torch.Tensor) -> torch.Tensor:
        if self.quant_method is not None:
            return self.quant_method.embed(self, ids)  # type: ignore[no-any-return]
        return F.embedding(ids, self.weight)

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """The LM head's use of the table: x [T, hidden] -> logits [T, rows of this rank]."""
        if self.quant_method is not None:
            return self.quant_method.apply(self, x)  # type: ignore[no-any-return]
        return gemm.linear(x, self.weight)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        if self.tp_size == 1:
            return self._lookup(ids)
        mine = (ids >= self.vocab_start) & (ids < self.vocab_end)
        local = torch.where(mine, ids - self.vocab_start, torch.zeros_like(ids))
        out = self._lookup(local)
        out.masked_fill_(~mine.unsqueeze(-1), 0)
        return all_reduce(out)

    def shard_spec(self, param_name: str, shard_id: str | None = None) -> ShardSpec | None:
        n = self.vocab_end - self.vocab_start
        assert self.weight is not None
        return ShardSpec(self.weight.data[:n], 0, self.vocab_start, n, self.vocab_size)


class ParallelLMHead(VocabParallelEmbedding):
    """An untied LM head: the same split, used only through `project` (see LogitsProcessor)."""

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("the LM head is applied by LogitsProcessor, not called")
