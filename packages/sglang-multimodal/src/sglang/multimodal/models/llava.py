"""LLaVA 1.5 (transformers' LlavaForConditionalGeneration): CLIP tower -> MLP projector -> the
runtime's Llama/Mistral decoder, with image rows scattered over the prompt's placeholders.

The decoder, KV cache, attention and sampling are the runtime's LlamaForCausalLM unchanged;
this class adds the tower and projector, the multimodal embedding hooks the runtime calls
(`embed_multimodal`, `embed_multimodal_batch`), and the LLaVA checkpoint names.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, ClassVar

import torch

from sglang.multimodal.encoders.clip import ClipVisionTower
from sglang.multimodal.geometry import VisionGeometry, llava_num_tokens
from sglang.multimodal.models.projector import build_projector
from sglang.multimodal.models.weight_names import llava_weight_name
from sglang.runtime.messages import MultimodalItem
from sglang.runtime.models.base import item_features
from sglang.runtime.models.config import ModelConfig
from sglang.runtime.models.llama import LlamaForCausalLM

# An item's tower features [P, tokens, vision hidden] -> its embeddings [item.length, hidden].
ItemEmbedder = Callable[[MultimodalItem, torch.Tensor], torch.Tensor]


class LlavaForConditionalGeneration(LlamaForCausalLM):
    # Modality -> name of the method that turns its tower features into embeddings; subclasses
    # add modalities (NeXT-Video: "video") or replace one (NeXT: anyres "image").
    embedders: ClassVar[dict[str, str]] = {"image": "embed_image"}
    # Most tower inputs (images, tiles, frames) per vision-tower call.
    tower_batch: ClassVar[int] = 256

    def __init__(self, config: ModelConfig | Any, dtype: torch.dtype = torch.float32) -> None:
        super().__init__(config, dtype)
        hf = self.model_config.hf
        self.geometry = VisionGeometry.from_hf_config(hf)
        self.vision_tower = ClipVisionTower(
            hf.vision_config,
            getattr(hf, "vision_feature_layer", -2),
            self.geometry.select_strategy,
            dtype,
        )
        self.multi_modal_projector = build_projector(
            hf, self.projector_in_features(), self.model_config.hidden_size, dtype
        )

    def projector_in_features(self) -> int:
        return self.vision_tower.out_features

    # ---- multimodal hooks the runtime calls -------------------------------------------------

    def embed_multimodal(self, item: MultimodalItem) -> torch.Tensor:
        return self.embed_multimodal_batch([item])[0]

    @torch.no_grad()
    def embed_multimodal_batch(self, items: Sequence[MultimodalItem]) -> list[torch.Tensor]:
        """One tower call over every image, tile and frame of `items`, then each item's own
        post-processing; one [item.length, hidden] tensor per item, in order."""
        embedders = [self._embedder(item) for item in items]
        device = self.multi_modal_projector_device()
        pixels = [self._pixels(item, device) for item in items]
        stacked = torch.cat(pixels).to(self.vision_tower.dtype)
        # Bounded chunks keep the tower's activations (N x 577 x 4096 in the MLP for CLIP-L)
        # small when a step brings many videos; each chunk still fills the GPU.
        features = torch.cat([self.vision_tower(chunk) for chunk in stacked.split(self.tower_batch)])
        per_item = features.split([p.shape[0] for p in pixels])
        return [embed(item, feats).to(self.dtype) for embed, item, feats in zip(embedders, items, per_item, strict=True)]

    def multi_modal_projector_device(self) -> torch.device:
        return self.vision_tower.vision_model.pre_layrnorm.weight.device

    def _embedder(self, item: MultimodalItem) -> ItemEmbedder:
        name = self.embedders.get(item.modality)
        if name is None:
            raise ValueError(f"{type(self).__name__} takes no {item.modality} inputs "
                             f"(it takes: {', '.join(sorted(self.embedders))})")
        return getattr(self, name)  # type: ignore[no-any-return]

    def _pixels(self, item: MultimodalItem, device: torch.device) -> torch.Tensor:
        side = self.geometry.image_size
        shape = tuple(item.shape)
        if len(shape) != 4 or shape[1:] != (3, side, side):
            raise ValueError(f"{item.modality} features must be [N, 3, {side}, {side}], got {list(shape)}")
        return item_features(item, device)

    # ---- per-modality embedding -------------------------------------------------------------

    def embed_image(self, item: MultimodalItem, features: torch.Tensor) -> torch.Tensor:
        """LLaVA 1.5 / Yi-VL: one tower input per image, every row projected."""
        if features.shape[0] != 1:
            raise ValueError(f"a LLaVA image is one {self.geometry.image_size}px square, "
                             f"got {features.shape[0]} patches")
        rows = self.multi_modal_projector(features[0])
        assert rows.shape[0] == llava_num_tokens(self.geometry)
        return rows

    # ---- weights ----------------------------------------------------------------------------

    def load_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> None:
        renamed = ((new, t) for name, t in named_tensors if (new := llava_weight_name(name)) is not None)
        super().load_weights(renamed)
