"""Neox-style rotary embeddings (the HF Llama layout: rotate the two halves of each head).

cos/sin are precomputed for every position up to `max_position` and gathered by each token's
absolute position, so ragged and prefix-cached batches need no special handling.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

import sglang.kernels as kernels


def rope_parameters(config: Any) -> dict[str, Any]:
    """The RoPE settings of an HF config as one dict with `rope_type` and `rope_theta`.

    transformers v5 keeps them in `config.rope_parameters`; v4 split them into `rope_theta`
    and an optional `rope_scaling` dict whose type key was `type` or `rope_type`.
    """
    params = dict(getattr(config, "rope_parameters", None) or {})
    scaling = getattr(config, "rope_scaling", None)
    if isinstance(scaling, dict):
        params = {**scaling, **params}
    if "rope_theta" not in params:
        params["rope_theta"] = getattr(config, "rope_theta", 10000.0)
    params["rope_type"] = params.get("rope_type") or params.get("type") or "default"
    return params


def _inv_freq(dim: int, params: dict[str, Any]) -> torch.Tensor:
    base = float(params["rope_theta"])
    inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim))
    rope_type = params["rope_type"]
    if rope_type == "default":
        return inv_freq
    if rope_type == "linear":
        return inv_freq / params["factor"]
    if rope_type == "llama3":
        return _llama3_inv_freq(inv_freq, params)
    raise NotImplementedError(f"rope type {rope_type!r} (supported: default, linear, llama3)")


def _llama3_inv_freq(inv_freq: torch.Tensor, params: dict[str, Any]) -> torch.Tensor:
    # Llama 3.1 long-context scaling: long wavelengths are slowed by `factor`, short ones kept,
    # and the band between is interpolated smoothly.
    factor = params["factor"]
    low, high = params["low_freq_factor"], params["high_freq_factor"]
    old_len = params["original_max_position_embeddings"]
    wavelen = 2 * math.pi / inv_freq
    scaled = torch.where(wavelen > old_len / low, inv_freq / factor, inv_freq)
    smooth = (old_len / wavelen - low) / (high - low)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    is_medium = (wavelen >= old_len / high) & (wavelen <= old_len / low)
    return torch.where(is_medium, smoothed, scaled)


class RotaryEmbedding(nn.Module):
    def __init__(self, head_dim: int, max_position: int, params: dict[str, Any]) -> None:
        super().__init__()
        self.head_dim = head_dim
        self.rotary_dim = int(head_dim * params.get("partial_rotary_factor", 1.0))
        inv_freq = _inv_freq(self.rotary_dim, params)
        freqs = torch.outer(torch.arange(max_position, dtype=torch.float32), inv_freq)
        # Half-width tables: both halves of a head use the same angles.
        self.register_buffer("cos", freqs.cos(), persistent=False)
        self.register_buffer("sin", freqs.sin(), persistent=False)
        # The same angles as one [max_position, rotary_dim] table for the CUDA kernel.
        self.register_buffer("cos_sin", torch.cat((freqs.cos(), freqs.sin()), -1), persistent=False)

    @classmethod
    def from_config(cls, config: Any, head_dim: int) -> RotaryEmbedding:
        return cls(head_dim, config.max_position_embeddings, rope_parameters(config))

    def _rotate(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        rot, rest = x[..., : self.rotary_dim], x[..., self.rotary_dim :]
        x1, x2 = rot.chunk(2, dim=-1)
        out = torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1)
        return out if rest.shape[-1] == 0 else torch.cat((out, rest), dim=-1)

    def forward(
        self, positions: torch.Tensor, q: torch.Tensor, k: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """q: [tokens, heads, head_dim], k: [tokens, kv_heads, head_dim]. On CUDA they are
        rotated in place by one Triton kernel (sglang-kernels)."""
        if q.is_cuda and q.stride(-1) == 1 and k.stride(-1) == 1:
            return kernels.rotary_embedding(positions, q, k, self.cos_sin, is_neox=True)
        cos = self.cos[positions].unsqueeze(1).to(q.dtype)
        sin = self.sin[positions].unsqueeze(1).to(q.dtype)
        return self._rotate(q, cos, sin), self._rotate(k, cos, sin)
