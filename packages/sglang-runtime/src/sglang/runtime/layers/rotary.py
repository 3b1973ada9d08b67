"""Neox-style rotary embeddings (the HF Llama layout: rotate the two halves of each head).

cos/sin are precomputed for every position up to `max_position` and gathered by each token's
absolute position, so ragged and prefix-cached batches need no special handling.
"""

from __future__ import annotations

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
    # Phi-3 keeps the pretraining length next to the rope dict, not in it.
    original = getattr(config, "original_max_position_embeddings", None)
    if original is not None:
        params.setdefault("original_max_position_embeddings", original)
    return params


class RotaryEmbedding(nn.Module):
    def __init__(
        self, head_dim: int, max_position: int, params: dict[str, Any], is_neox: bool = True
    ) -> None:
        super().__init__()
        self.head_dim = head_dim
        # False: GPT-J/Cohere layout, rotating the pairs (2i, 2i + 1) instead of the halves.
        self.is_neox = is_neox
        self.rotary_dim = int(head_dim * params.get("partial_rotary_factor", 1.0))
        # The kernel library owns the scaling rules (default, linear, dynamic, yarn, llama3,
        # longrope) and folds YaRN's / longrope's attention factor into the tables.
        freqs = kernels.rope_frequencies(
            self.rotary_dim, float(params["rope_theta"]), params, max_position
        )
        cos, sin = kernels.rope_angles(freqs, max_position)
        # Half-width tables: both halves of a head use the same angles.
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)
        # The same angles as one [max_position, rotary_dim] table for the CUDA kernel.
        self.register_buffer("cos_sin", torch.cat((cos, sin), -1), persistent=False)

    @classmethod
    def from_config(cls, config: Any, head_dim: int, is_neox: bool = True) -> RotaryEmbedding:
        return cls(head_dim, config.max_position_embeddings, rope_parameters(config), is_neox)

    def _rotate(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        rot, rest = x[..., : self.rotary_dim], x[..., self.rotary_dim :]
        if self.is_neox:
            x1, x2 = rot.chunk(2, dim=-1)
            out = torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1)
        else:
            x1, x2 = rot[..., 0::2], rot[..., 1::2]
            out = torch.stack((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1).flatten(-2)
        return out if rest.shape[-1] == 0 else torch.cat((out, rest), dim=-1)

    def forward(
        self, positions: torch.Tensor, q: torch.Tensor, k: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """q: [tokens, heads, head_dim], k: [tokens, kv_heads, head_dim]. On CUDA they are
        rotated in place by one Triton kernel (sglang-kernels)."""
        if q.is_cuda and q.stride(-1) == 1 and k.stride(-1) == 1:
            return kernels.rotary_embedding(positions, q, k, self.cos_sin, is_neox=self.is_neox)
        cos = self.cos[positions].unsqueeze(1).to(q.dtype)
        sin = self.sin[positions].unsqueeze(1).to(q.dtype)
        return self._rotate(q, cos, sin), self._rotate(k, cos, sin)

    def rotate_and_store_kv(
        self,
        positions: torch.Tensor,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        k_buffer: torch.Tensor,
        v_buffer: torch.Tensor,
        loc: torch.Tensor,
    ) -> bool:
        """Rotate q and k in place and write the rotated K and V into one layer's pool at `loc`,
        in one Triton kernel; False (nothing done) where that kernel does not apply: a device
        it can't run on, partial rotary dims, or views without a contiguous last dim."""
        if not (kernels.can_launch(q) and self.rotary_dim == self.head_dim
                and q.stride(-1) == 1 and k.stride(-1) == 1 and v.stride(-1) == 1):
            return False
        kernels.rotary_embedding_and_store_kv(
            positions, q, k, v, self.cos_sin, k_buffer, v_buffer, loc, is_neox=self.is_neox
        )
        return True

    def rotate_and_store_kv_cpu(
        self,
        positions: torch.Tensor,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        k_buffer: torch.Tensor,
        v_buffer: torch.Tensor,
        loc: torch.Tensor,
    ) -> bool:
        """`rotate_and_store_kv` on the CPU with the C kernel (`kernels.rope_store_kv_cpu`): q
        rotated in place, rotated K and V written to the pool at `loc` (k itself is left as it
        was), with the torch path's arithmetic bit for bit; False (nothing done) where that
        kernel does not apply (float32 only)."""
        return bool(kernels.rope_store_kv_cpu(
            q, k, v, positions, self.cos, self.sin, k_buffer, v_buffer, loc, is_neox=self.is_neox,
        ))
