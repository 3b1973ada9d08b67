"""A toy video-language model for the video job's Engine tests, on the runtime tests' toy VL
model (`mm_toy`, a tiny random Llama with a seeded linear "encoder"): a video is its sampled
frames averaged into one small image, spliced in at `<video>`. Registered in this process only,
so the job runs in process (the local runner) with it."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import mm_toy
import numpy as np

from sglang.runtime import plugins
from sglang.runtime.messages import MultimodalItem
from sglang.runtime.multimodal.items import Features, splice_items

ARCH = "ToyVideoForCausalLM"
VIDEO_MARKER = mm_toy.VOCAB - 2
DEFAULT_FRAMES = 2


def _source(entry: Any) -> tuple[Any, int]:
    """(reference, frames) of a video entry in any form the protocol passes on."""
    if isinstance(entry, dict):
        return entry["url"], entry.get("num_frames") or DEFAULT_FRAMES
    if hasattr(entry, "source"):  # sglang.protocol.media.VideoRef
        return entry.source, entry.num_frames or DEFAULT_FRAMES
    return entry, DEFAULT_FRAMES


def video_features(entry: Any) -> Features:
    import av
    from PIL import Image

    ref, frames = _source(entry)
    try:
        with av.open(ref) as container:
            decoded = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    except Exception as e:  # PyAV's errors: the file is no video
        raise ValueError(f"cannot decode video {ref}: {e}") from e
    if len(decoded) < frames:
        raise ValueError(f"{ref} has {len(decoded)} frames, fewer than {frames}")
    picks = np.linspace(0, len(decoded) - 1, frames, dtype=int)
    mean = np.mean([decoded[i] for i in picks], axis=0).astype(np.uint8)
    image = mm_toy.toy_features(Image.fromarray(mean))
    return Features("video", image.data, image.dtype, image.shape, image.num_tokens)


class ToyVideoProcessor:
    def __init__(self, config: Any) -> None:
        self.vocab_size = config.vocab_size

    def process(self, prompt: str | list[int], images: Sequence[Any], videos: Sequence[Any],
                tokenizer: Any) -> tuple[list[int], list[MultimodalItem]]:
        if images or not isinstance(prompt, str):
            raise ValueError("the toy video model takes text prompts with videos only")
        ids: list[int] = []
        for i, part in enumerate(prompt.split("<video>")):
            if i:
                ids.append(VIDEO_MARKER)
            ids.extend(tokenizer.encode(part) if part.strip() else [])
        return splice_items(ids, {VIDEO_MARKER: [video_features(v) for v in videos]},
                            self.vocab_size)


def register() -> None:
    plugins.MODELS.register(ARCH, mm_toy.ToyVLForCausalLM)
    plugins.INPUT_PROCESSORS.register(ARCH, ToyVideoProcessor)


def unregister() -> None:
    plugins.MODELS.unregister(ARCH)
    plugins.INPUT_PROCESSORS.unregister(ARCH)


def save_toy_video_model(folder: Path) -> str:
    mm_toy.save_toy_model(folder)
    path = folder / "config.json"
    data = json.loads(path.read_text())
    data["architectures"] = [ARCH]
    path.write_text(json.dumps(data))
    return str(folder)
