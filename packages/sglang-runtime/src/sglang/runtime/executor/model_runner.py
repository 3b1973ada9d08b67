"""Runs one forward pass of a model over a prepared batch."""

from __future__ import annotations

import torch
from torch import nn

from sglang.runtime.attention.base import AttentionBackend
from sglang.runtime.cache.kv_pool import KVPool
from sglang.runtime.executor.forward_context import ForwardBatch, forward_context


class ModelRunner:
    """Owns the model, its KV pool and the attention backend; `forward` returns float32 logits
    [num_selected, vocab] for the batch (one row per request unless `logits_indices` is set)."""

    def __init__(self, model: nn.Module, kv_pool: KVPool, attn_backend: AttentionBackend) -> None:
        self.model = model
        self.kv_pool = kv_pool
        self.attn_backend = attn_backend

    def forward(self, batch: ForwardBatch) -> torch.Tensor:
        if batch.kv_pool is not self.kv_pool:
            raise ValueError("batch.kv_pool is not the runner's KV pool")
        with torch.inference_mode(), forward_context(batch, self.attn_backend):
            return self.model(batch)
