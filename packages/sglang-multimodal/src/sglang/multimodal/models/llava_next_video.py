"""LLaVA-NeXT-Video: images as in LLaVA-NeXT; a video is F frames, each through the tower, its
patch grid pooled stride x stride (24x24 -> 12x12 for the 7B), then projected. Pooling comes
before the projector, as in transformers' LlavaNextVideo; frames follow each other in order."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from sglang.multimodal.geometry import llava_next_video_num_tokens
from sglang.multimodal.models.llava_next import LlavaNextForConditionalGeneration
from sglang.runtime.messages import MultimodalItem
from sglang.runtime.models.config import ModelConfig

# `spatial_pool_mode` -> the pooling layer (parameter-free modes only: "conv" checkpoints are not
# among those this package serves).
POOLS: dict[str, type[nn.Module]] = {"average": nn.AvgPool2d, "max": nn.MaxPool2d}


class LlavaNextVideoPooler(nn.Module):
    """Frame features [F, g * g, D] -> [F, (g // stride) ** 2, D]."""

    def __init__(self, mode: str, stride: int) -> None:
        super().__init__()
        if mode not in POOLS:
            raise ValueError(f"unsupported spatial_pool_mode {mode!r} (supported: {sorted(POOLS)})")
        self.pool = POOLS[mode](kernel_size=stride, stride=stride)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        count, tokens, dim = frames.shape
        side = int(round(tokens**0.5))
        spatial = frames.view(count, side, side, dim).permute(0, 3, 1, 2)
        return self.pool(spatial).flatten(2).transpose(1, 2)


class LlavaNextVideoForConditionalGeneration(LlavaNextForConditionalGeneration):
    embedders: ClassVar[dict[str, str]] = {"image": "embed_anyres_image", "video": "embed_video"}

    def __init__(self, config: ModelConfig | Any, dtype: torch.dtype = torch.float32) -> None:
        super().__init__(config, dtype)
        hf = self.model_config.hf
        self.pool_stride = int(getattr(hf, "spatial_pool_stride", 2))
        self.vision_resampler = LlavaNextVideoPooler(getattr(hf, "spatial_pool_mode", "average"), self.pool_stride)

    def embed_video(self, item: MultimodalItem, features: torch.Tensor) -> torch.Tensor:
        rows = self.multi_modal_projector(self.vision_resampler(features)).flatten(0, 1)
        assert rows.shape[0] == llava_next_video_num_tokens(features.shape[0], self.geometry, self.pool_stride)
        return rows
