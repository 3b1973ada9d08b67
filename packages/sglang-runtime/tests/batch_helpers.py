"""Builds ForwardBatches by hand so models run without the scheduler.

`ToyKV` owns a fresh KVPool and a plain req_to_token table; each request is a row, and slots
are handed out in allocation order, so requests decoding together get interleaved slots
(which exercises the gather through req_to_token rather than assuming contiguity).
"""

from __future__ import annotations

from typing import Any

import torch

from sglang.runtime.attention.base import create_backend
from sglang.runtime.cache.kv_pool import KVPool
from sglang.runtime.executor.forward_context import ForwardBatch, ForwardMode
from sglang.runtime.executor.model_runner import ModelRunner


class ToyKV:
    def __init__(
        self,
        config: Any,
        max_reqs: int = 8,
        max_context: int = 256,
        dtype: torch.dtype = torch.float32,
        device: str = "cpu",
    ) -> None:
        head_dim = getattr(config, "head_dim", None) or (
            config.hidden_size // config.num_attention_heads
        )
        self.pool = KVPool(
            max_reqs * max_context,
            config.num_hidden_layers,
            config.num_key_value_heads,
            head_dim,
            dtype,
            device,
        )
        self.device = torch.device(device)
        # Unused entries point at slot 0: the backend must never read past seq_len.
        self.req_to_token = torch.zeros(max_reqs, max_context, dtype=torch.int64, device=device)
        self.lens = [0] * max_reqs
        self.next_slot = 0

    def _alloc(self, row: int, n: int) -> torch.Tensor:
        slots = torch.arange(self.next_slot, self.next_slot + n, device=self.device)
        self.next_slot += n
        self.req_to_token[row, self.lens[row] : self.lens[row] + n] = slots
        self.lens[row] += n
        return slots

    def _batch(
        self, mode: ForwardMode, rows: list[int], new_tokens: list[list[int]]
    ) -> ForwardBatch:
        prefix = [self.lens[r] for r in rows]
        locs = [self._alloc(r, len(toks)) for r, toks in zip(rows, new_tokens, strict=True)]
        positions = [torch.arange(p, p + len(t)) for p, t in zip(prefix, new_tokens, strict=True)]
        seq = [self.lens[r] for r in rows]
        ext = [len(t) for t in new_tokens]

        def ids(values: list[int]) -> torch.Tensor:
            return torch.tensor(values, dtype=torch.int64, device=self.device)

        return ForwardBatch(
            mode=mode,
            input_ids=ids([t for toks in new_tokens for t in toks]),
            positions=torch.cat(positions).to(self.device),
            out_cache_loc=torch.cat(locs),
            req_pool_indices=ids(rows),
            seq_lens=ids(seq),
            prefix_lens=ids(prefix),
            extend_lens=ids(ext),
            req_to_token=self.req_to_token,
            kv_pool=self.pool,
            seq_lens_cpu=seq,
            prefix_lens_cpu=prefix,
            extend_lens_cpu=ext,
        )

    def extend(
        self, rows: list[int], new_tokens: list[list[int]], all_logits: bool = False
    ) -> ForwardBatch:
        """Append `new_tokens[i]` to request `rows[i]` after whatever it already cached."""
        batch = self._batch(ForwardMode.EXTEND, rows, new_tokens)
        if all_logits:
            batch.logits_indices = torch.arange(batch.num_tokens, device=self.device)
        return batch

    def decode(self, rows: list[int], tokens: list[int]) -> ForwardBatch:
        return self._batch(ForwardMode.DECODE, rows, [[t] for t in tokens])


def make_runner(model: torch.nn.Module, kv: ToyKV, **backend_kwargs: Any) -> ModelRunner:
    return ModelRunner(model, kv.pool, create_backend("torch", **backend_kwargs))
