"""The model interface: what the runtime asks of a causal LM, and the shared multimodal step.

A model class is registered under the HF `architectures` names it implements and built as
`cls(config, dtype)`, where `config` is a `ModelConfig` (or a raw HF config, which it wraps).
It then provides:

- `forward(batch: ForwardBatch) -> Tensor`: float32 logits for the rows the batch selects
  (one per request, or `batch.logits_indices`). Attention goes through the forward context's
  backend; the model never sees the KV pool.
- `load_weights(named_tensors)`: HF-named tensors in any order (a checkpoint stream).
- `kv_cache_spec() -> KVCacheSpec`: the KV geometry of this rank's shard; the builder sizes
  the KV pool from it and reads no config attribute itself.

Multimodal models add `embed_multimodal(item) -> Tensor[item.length, hidden]` (encoder plus
projector, on the full item), and may add `embed_multimodal_batch(items) -> list[Tensor]` to
encode every new item of a step in one pass. In an EXTEND batch, `batch.mm_inputs` lists the parts of items whose
placeholder positions fall in the batch; `input_embeddings` embeds the text ids (placeholders
masked), takes each item's rows from the encoder cache (encoding on a miss) and scatters the rows
of this chunk, and the decoder stack runs on those embeddings. Text-only batches skip all of it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import torch

from sglang.runtime.executor.forward_context import ForwardBatch, get_forward_context
from sglang.runtime.messages import MultimodalItem
from sglang.runtime.models.config import ModelConfig


@dataclass(frozen=True)
class KVCacheSpec:
    num_layers: int
    num_kv_heads: int  # this rank's share
    head_dim: int
    dtype: torch.dtype
    sliding_window: int | None = None


@runtime_checkable
class CausalLM(Protocol):
    model_config: ModelConfig

    def forward(self, batch: ForwardBatch) -> torch.Tensor: ...

    def load_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> None: ...

    def kv_cache_spec(self) -> KVCacheSpec: ...


@runtime_checkable
class MultimodalLM(CausalLM, Protocol):
    def embed_multimodal(self, item: MultimodalItem) -> torch.Tensor: ...


def item_features(item: MultimodalItem, device: torch.device | str) -> torch.Tensor:
    """The item's preprocessed features as a tensor (a copy: msgpack bytes are read-only)."""
    array = np.frombuffer(item.features, dtype=np.dtype(item.dtype)).reshape(item.shape)
    return torch.from_numpy(array.copy()).to(device)


def encode_items(model: MultimodalLM, items: Sequence[MultimodalItem]) -> dict[str, torch.Tensor]:
    """Encoder rows by content hash for the distinct items of a batch: cached ones from the
    forward context's encoder cache, the rest in one `embed_multimodal_batch` call when the model
    has it (one vision-tower pass for every image of the step), else item by item."""
    cache = get_forward_context().encoder_cache
    rows: dict[str, torch.Tensor] = {}
    todo: dict[str, MultimodalItem] = {}  # content hash -> the first item holding it
    for item in items:
        if item.content_hash in rows or item.content_hash in todo:
            continue
        found = cache.get(item.content_hash) if cache is not None else None
        if found is None:
            todo[item.content_hash] = item
        else:
            rows[item.content_hash] = found
    if todo:
        new = list(todo.values())
        batched = getattr(model, "embed_multimodal_batch", None)
        outs = batched(new) if batched is not None else [model.embed_multimodal(t) for t in new]
        for item, out in zip(new, outs, strict=True):
            if out.shape[0] != item.length:
                raise ValueError(f"the encoder gave {out.shape[0]} embeddings for a {item.modality} "
                                 f"of {item.length} placeholder tokens")
            rows[item.content_hash] = out
            if cache is not None:
                cache.put(item.content_hash, out)
    return rows


def input_embeddings(
    batch: ForwardBatch,
    embed_tokens: Callable[[torch.Tensor], torch.Tensor],
    model: MultimodalLM,
    vocab_size: int,
) -> torch.Tensor:
    """Token embeddings of an EXTEND batch with its multimodal items' rows scattered over their
    placeholder positions. Placeholder ids (>= vocab_size) never reach `embed_tokens`."""
    ids = batch.input_ids
    embeds = embed_tokens(torch.where(ids >= vocab_size, torch.zeros_like(ids), ids))
    rows = encode_items(model, [part.item for part in batch.mm_inputs])
    for part in batch.mm_inputs:
        item_rows = rows[part.item.content_hash]
        embeds[part.dst : part.dst + part.count] = item_rows[
            part.first : part.first + part.count
        ].to(embeds.dtype)
    return embeds
