"""A toy vision-language model and input processor for the multimodal tests, registered the way
a plug-in would be (`plugins.MODELS`, `plugins.INPUT_PROCESSORS`), on a tiny random Llama."""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from sglang.protocol.media import MediaRef
from sglang.runtime import plugins
from sglang.runtime.messages import MultimodalItem
from sglang.runtime.models.base import item_features
from sglang.runtime.models.llama import LlamaForCausalLM
from sglang.runtime.multimodal.items import Features, splice_items
from sglang.runtime.multimodal.media import load_image

ARCH = "ToyVLForCausalLM"
VOCAB = 64
IMAGE_SIDE = 8
IMAGE_TOKENS = 16  # 8 x 8 x 3 pixels -> 16 tokens of 12 values
PIXELS_PER_TOKEN = IMAGE_SIDE * IMAGE_SIDE * 3 // IMAGE_TOKENS
# The image token: a vocabulary id that stands for <image> in ids given to the processor (as
# LLaVA tokenizers reserve one); the processor replaces it with the image's placeholder span.
MARKER = VOCAB - 1


class ToyVLForCausalLM(LlamaForCausalLM):
    """Llama plus a fixed "encoder": each token's 12 pixel values through a seeded projection."""

    encoded: ClassVar[list[str]] = []  # content hashes, one per encoder call

    def __init__(self, config: Any, dtype: torch.dtype = torch.float32) -> None:
        super().__init__(config, dtype)
        g = torch.Generator().manual_seed(1234)
        proj = torch.randn(PIXELS_PER_TOKEN, self.model_config.hidden_size, generator=g)
        # A buffer, not a parameter: the Llama checkpoint has no encoder weights to load.
        self.register_buffer("proj", proj.to(dtype), persistent=False)

    def embed_multimodal(self, item: MultimodalItem) -> torch.Tensor:
        type(self).encoded.append(item.content_hash)
        pixels = item_features(item, self.proj.device).to(self.proj.dtype)
        return pixels @ self.proj


def toy_features(image: Any) -> Features:
    pixels = np.asarray(image.resize((IMAGE_SIDE, IMAGE_SIDE)), dtype=np.float32) / 255.0
    pixels = np.ascontiguousarray(pixels.reshape(IMAGE_TOKENS, PIXELS_PER_TOKEN))
    return Features("image", pixels.tobytes(), "float32", pixels.shape, IMAGE_TOKENS)


class ToyProcessor:
    """"<image>" in text (or MARKER in ids) -> that image's placeholder span."""

    def __init__(self, config: Any) -> None:
        self.vocab_size = config.vocab_size

    def process(
        self,
        prompt: str | list[int],
        images: Sequence[MediaRef],
        videos: Sequence[MediaRef],
        tokenizer: Any,
    ) -> tuple[list[int], list[MultimodalItem]]:
        if videos:
            raise ValueError("the toy model takes no videos")
        if isinstance(prompt, str):
            ids: list[int] = []
            for i, part in enumerate(prompt.split("<image>")):
                if i:
                    ids.append(MARKER)
                ids.extend(tokenizer.encode(part) if part.strip() else [])
        else:
            ids = list(prompt)
        return splice_items(ids, {MARKER: [toy_features(load_image(r)) for r in images]},
                            self.vocab_size)


def register() -> None:
    plugins.MODELS.register(ARCH, ToyVLForCausalLM)
    plugins.INPUT_PROCESSORS.register(ARCH, ToyProcessor)


def unregister() -> None:
    plugins.MODELS.unregister(ARCH)
    plugins.INPUT_PROCESSORS.unregister(ARCH)


def save_toy_model(folder: Path) -> str:
    import transformers
    from tiny_models import save_tiny_model

    config = transformers.LlamaConfig(
        vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
    )
    save_tiny_model(config, folder)
    path = folder / "config.json"
    data = json.loads(path.read_text())
    data["architectures"] = [ARCH]
    path.write_text(json.dumps(data))
    return str(folder)


def png_bytes(seed: int) -> bytes:
    from PIL import Image

    pixels = np.random.default_rng(seed).integers(0, 256, (IMAGE_SIDE, IMAGE_SIDE, 3), np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()
