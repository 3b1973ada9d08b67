"""The CLIP ViT vision tower (pre-LayerNorm), with transformers' CLIPVisionModel parameter names.

The tower is replicated on every tensor-parallel rank: it is small next to the language model,
and splitting it would add two all-reduces per layer for images that are encoded once and cached.
Only the layers up to the deepest selected `vision_feature_layer` run (LLaVA reads the
second-to-last, so the last layer is loaded but never computed).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from sglang.multimodal.encoders.activations import Activation
from sglang.runtime.layers.linear import Linear, MergedLinear
from sglang.runtime.models.weight_utils import load_named_tensors

# transformers' separate q/k/v projections -> our fused one (the checkpoint keeps them apart).
CLIP_FUSED_WEIGHTS: dict[str, tuple[str, str]] = {
    "q_proj": ("qkv_proj", "q"),
    "k_proj": ("qkv_proj", "k"),
    "v_proj": ("qkv_proj", "v"),
}


def _replicated(size: int) -> tuple[int, int, int]:
    # MergedLinear's (rows kept, first row, rows in all): every rank keeps the whole shard.
    return (size, 0, size)


class ClipEmbeddings(nn.Module):
    def __init__(self, config: Any, dtype: torch.dtype) -> None:
        super().__init__()
        hidden, patch = config.hidden_size, config.patch_size
        self.image_size = config.image_size
        self.class_embedding = nn.Parameter(torch.empty(hidden, dtype=dtype), requires_grad=False)
        self.patch_embedding = nn.Conv2d(
            config.num_channels, hidden, kernel_size=patch, stride=patch, bias=False, dtype=dtype
        )
        num_positions = (config.image_size // patch) ** 2 + 1
        self.position_embedding = nn.Embedding(num_positions, hidden, dtype=dtype)
        self.position_embedding.weight.requires_grad_(False)
        self.patch_embedding.weight.requires_grad_(False)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        side = pixel_values.shape[-1]
        if pixel_values.shape[-2:] != (self.image_size, self.image_size):
            raise ValueError(f"the vision tower takes {self.image_size}x{self.image_size} images, "
                             f"got {pixel_values.shape[-2]}x{side}")
        weight = self.patch_embedding.weight
        patches = self.patch_embedding(pixel_values.to(weight.dtype)).flatten(2).transpose(1, 2)
        cls = self.class_embedding.expand(patches.shape[0], 1, -1)
        return torch.cat([cls, patches], dim=1) + self.position_embedding.weight


class ClipAttention(nn.Module):
    """Bidirectional multi-head attention over one image's tokens (torch SDPA)."""

    def __init__(self, config: Any, dtype: torch.dtype) -> None:
        super().__init__()
        hidden = config.hidden_size
        self.num_heads = config.num_attention_heads
        self.head_dim = hidden // self.num_heads
        shards = {name: _replicated(hidden) for name in ("q", "k", "v")}
        self.qkv_proj = MergedLinear(hidden, shards, bias=True, dtype=dtype)
        self.out_proj = Linear(hidden, hidden, bias=True, dtype=dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, hidden = x.shape
        q, k, v = (
            t.view(batch, length, self.num_heads, self.head_dim).transpose(1, 2)
            for t in self.qkv_proj.split(self.qkv_proj(x))
        )
        out = F.scaled_dot_product_attention(q, k, v, scale=self.head_dim**-0.5)
        return self.out_proj(out.transpose(1, 2).reshape(batch, length, hidden))


class ClipMLP(nn.Module):
    def __init__(self, config: Any, dtype: torch.dtype) -> None:
        super().__init__()
        self.fc1 = Linear(config.hidden_size, config.intermediate_size, bias=True, dtype=dtype)
        self.act = Activation(config.hidden_act)
        self.fc2 = Linear(config.intermediate_size, config.hidden_size, bias=True, dtype=dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class ClipEncoderLayer(nn.Module):
    def __init__(self, config: Any, dtype: torch.dtype) -> None:
        super().__init__()
        eps = config.layer_norm_eps
        self.layer_norm1 = nn.LayerNorm(config.hidden_size, eps=eps, dtype=dtype)
        self.self_attn = ClipAttention(config, dtype)
        self.layer_norm2 = nn.LayerNorm(config.hidden_size, eps=eps, dtype=dtype)
        self.mlp = ClipMLP(config, dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.self_attn(self.layer_norm1(x))
        return x + self.mlp(self.layer_norm2(x))


class ClipEncoder(nn.Module):
    def __init__(self, config: Any, dtype: torch.dtype) -> None:
        super().__init__()
        self.layers = nn.ModuleList(ClipEncoderLayer(config, dtype) for _ in range(config.num_hidden_layers))


class ClipVisionTransformer(nn.Module):
    def __init__(self, config: Any, dtype: torch.dtype) -> None:
        super().__init__()
        eps = config.layer_norm_eps
        self.embeddings = ClipEmbeddings(config, dtype)
        # "layrnorm" is the checkpoints' spelling.
        self.pre_layrnorm = nn.LayerNorm(config.hidden_size, eps=eps, dtype=dtype)
        self.encoder = ClipEncoder(config, dtype)
        # Loaded (checkpoints carry it) but unused: LLaVA reads hidden states, not the pooled CLS.
        self.post_layernorm = nn.LayerNorm(config.hidden_size, eps=eps, dtype=dtype)
        for param in self.parameters():
            param.requires_grad_(False)

    def hidden_states(self, pixel_values: torch.Tensor, depth: int | None = None) -> list[torch.Tensor]:
        """[embeddings after pre-LN, layer 1 output, ...], up to `depth` layers (all by default),
        the same list as transformers' `output_hidden_states`."""
        x = self.pre_layrnorm(self.embeddings(pixel_values))
        states = [x]
        for layer in self.encoder.layers[:depth]:
            x = layer(x)
            states.append(x)
        return states


def _layer_list(feature_layer: int | Sequence[int]) -> tuple[int, ...]:
    return (int(feature_layer),) if isinstance(feature_layer, int) else tuple(int(i) for i in feature_layer)


class ClipVisionTower(nn.Module):
    """pixel_values [N, 3, S, S] -> features [N, tokens, hidden * len(feature layers)].

    `feature_layer` indexes the hidden-state list (negative from the end, as HF configs write it);
    a list concatenates those layers along the hidden size. Strategy "default" drops the CLS row.
    """

    def __init__(
        self,
        vision_config: Any,
        feature_layer: int | Sequence[int] = -2,
        select_strategy: str = "default",
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        if select_strategy not in ("default", "full"):
            raise ValueError(f"unknown vision_feature_select_strategy {select_strategy!r}")
        self.config = vision_config
        self.vision_model = ClipVisionTransformer(vision_config, dtype)
        num_states = vision_config.num_hidden_layers + 1
        self.feature_layers = tuple(i % num_states for i in _layer_list(feature_layer))
        self.drop_cls = select_strategy == "default"
        self.out_features = vision_config.hidden_size * len(self.feature_layers)

    @property
    def dtype(self) -> torch.dtype:
        return self.vision_model.pre_layrnorm.weight.dtype

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        states = self.vision_model.hidden_states(pixel_values, depth=max(self.feature_layers))
        features = torch.cat([states[i] for i in self.feature_layers], dim=-1)
        return features[:, 1:] if self.drop_cls else features

    def load_weights(self, named_tensors: Iterable[tuple[str, Any]]) -> None:
        """A CLIPVisionModel or CLIPModel checkpoint, with or without the `vision_model.` level."""
        renamed = ((new, t) for name, t in named_tensors if (new := clip_weight_name(name)) is not None)
        load_named_tensors(self, renamed, CLIP_FUSED_WEIGHTS)


# Parts of a full CLIPModel checkpoint (and saved buffers) that the vision tower does not use.
_CLIP_UNUSED = ("text_model.", "logit_scale", "visual_projection.", "text_projection.", "position_ids")


def clip_weight_name(name: str) -> str | None:
    """Our tower's name of a CLIP checkpoint tensor, or None for tensors the tower ignores.

    transformers 5 saves CLIPVisionModel without the `vision_model.` level that CLIPModel and
    older checkpoints have; both map to our `vision_model.` tree."""
    if any(name.startswith(p) or name.endswith(p) for p in _CLIP_UNUSED):
        return None
    return name if name.startswith("vision_model.") else f"vision_model.{name}"
