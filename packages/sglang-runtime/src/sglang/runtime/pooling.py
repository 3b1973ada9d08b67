"""Embedding models (`is_embedding`): which pooling a model uses, and pooling itself.

The pooling comes from sentence-transformers' files in the model folder (modules.json naming a
Pooling module, whose config.json sets `pooling_mode_*`); without them it is the last token's
hidden state, which is what causal LMs trained as embedders (E5-Mistral, GTE-Qwen, Qwen3-
Embedding) use. The result is always L2-normalised.

Hidden states are the final (normed) decoder output, the `last_hidden_state` of transformers'
base model: in embedding mode the model's logits processor is swapped for `HiddenStates`.
"""

from __future__ import annotations

import json
import os
from typing import Any

import torch
from torch import nn

POOLINGS = ("last", "mean", "cls")
DEFAULT_POOLING = "last"
# sentence-transformers' Pooling config keys, in the order we prefer them when several are on.
_ST_MODES = {"pooling_mode_lasttoken": "last", "pooling_mode_mean_tokens": "mean",
             "pooling_mode_cls_token": "cls"}
_ST_POOLING_TYPE = "sentence_transformers.models.Pooling"


def _read_json(path: str) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def resolve_pooling(model_path: str | None) -> str:
    """The pooling of the model at `model_path` (see the module doc); ValueError for a
    sentence-transformers pooling we do not implement (max, weighted mean, ...)."""
    if model_path is None or not os.path.isdir(model_path):
        return DEFAULT_POOLING
    modules = _read_json(os.path.join(model_path, "modules.json"))
    folder = "1_Pooling"
    if isinstance(modules, list):
        for m in modules:
            if isinstance(m, dict) and m.get("type") == _ST_POOLING_TYPE:
                folder = str(m.get("path", folder))
    config = _read_json(os.path.join(model_path, folder, "config.json"))
    if not isinstance(config, dict):
        return DEFAULT_POOLING
    on = [mode for key, mode in _ST_MODES.items() if config.get(key)]
    others = [k for k, v in config.items()
              if k.startswith("pooling_mode_") and v and k not in _ST_MODES]
    if others or len(on) > 1:
        raise ValueError(f"{model_path}: the sentence-transformers pooling {others or on} is "
                         f"not supported (one of: {', '.join(POOLINGS)})")
    return on[0] if on else DEFAULT_POOLING


def needs_every_token(pooling: str) -> bool:
    """Whether pooling reads positions other than the last (so no cached prefix may be
    skipped: its hidden states were never kept)."""
    return pooling != "last"


class HiddenStates(nn.Module):
    """Stands in for a model's LogitsProcessor: float32 hidden states of every token."""

    def forward(self, hidden: torch.Tensor, lm_head: nn.Module, batch: Any) -> torch.Tensor:
        index = getattr(batch, "logits_indices", None)
        return (hidden if index is None else hidden[index]).float()


def use_hidden_states(model: nn.Module) -> None:
    """Make `model.forward` return hidden states instead of logits."""
    if not isinstance(getattr(model, "logits_processor", None), nn.Module):
        raise ValueError(f"{type(model).__name__} cannot be served as an embedding model "
                         "(it has no logits processor to replace)")
    model.logits_processor = HiddenStates()


class PoolState:
    """One request's running pool over its extend chunks (chunked prefill splits a prompt)."""

    def __init__(self, pooling: str) -> None:
        self.pooling = pooling
        self.acc: torch.Tensor | None = None
        self.count = 0

    def add(self, rows: torch.Tensor, first_position: int) -> None:
        """`rows`: hidden states [n, H] of positions first_position .. first_position + n - 1."""
        if self.pooling == "last":
            self.acc = rows[-1]
        elif self.pooling == "cls":
            if first_position == 0:
                self.acc = rows[0]
        else:
            total = rows.sum(dim=0)
            self.acc = total if self.acc is None else self.acc + total
            self.count += rows.shape[0]

    def vector(self) -> list[float]:
        if self.acc is None:
            raise RuntimeError("pooling saw no hidden states")
        v = self.acc / self.count if self.pooling == "mean" else self.acc
        return torch.nn.functional.normalize(v.float(), dim=-1).tolist()
