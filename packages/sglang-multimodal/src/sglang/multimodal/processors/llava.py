"""The LLaVA-family input processor: prompt + image / video references -> input_ids with one
placeholder span per item, and the items (torch-free; runs in the tokenizer process).

One class serves every architecture of the family; what differs is how an image becomes pixel
values (`IMAGE_MODES`: CLIP as is, centred on a mean-coloured square first, or anyres tiles)
and whether videos are taken. Features follow the package contract: float32 pixel values as
transformers' processors produce them, [P, 3, S, S] per image (P = 1, or 1 + tiles for anyres,
with meta {"image_size": [h, w]}), [F, 3, S, S] per video; every token count comes from
geometry.py, the functions the models use to size their outputs."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from sglang.multimodal import geometry
from sglang.multimodal.processors.image import (
    clip_view,
    preprocess_anyres,
    preprocess_clip,
)
from sglang.multimodal.processors.image_config import ImageConfig, load_image_config
from sglang.multimodal.processors.markers import Marker, marker_token_ids, prompt_ids
from sglang.multimodal.processors.settings import (
    LLAVA_IMAGE_INDEX,
    LLAVA_VIDEO_INDEX,
    VIDEO_PREPROCESSOR_FILE,
    default_num_frames,
    hf_field,
    settings_folders,
    vision_geometry,
)
from sglang.multimodal.processors.video import read_frames, video_request
from sglang.protocol.media import MediaRef
from sglang.runtime.messages import MultimodalItem
from sglang.runtime.models.config import ModelConfig
from sglang.runtime.multimodal.items import Features, splice_items
from sglang.runtime.multimodal.media import load_image

IMAGE_TEXT = "<image>"
VIDEO_TEXT = "<video>"
# Yi-VL's prompts mark images with this string (its code's DEFAULT_IMAGE_TOKEN).
YI_IMAGE_TEXT = "<image_placeholder>"


@dataclass(frozen=True)
class Prepared:
    """What one process call needs beyond the config, resolved once per tokenizer. Text
    prompts mark media with LLaVA's out-of-vocabulary ids (so a marker can never be confused
    with a token the text itself encodes to); id prompts with the model's token ids."""

    image_cfg: ImageConfig
    video_cfg: ImageConfig
    text_markers: tuple[Marker, ...]  # image first, then video when the model takes videos
    id_markers: tuple[Marker, ...]


class LlavaInputProcessor:
    """See the module doc. `image_mode` names an entry of IMAGE_MODES."""

    def __init__(self, config: ModelConfig, image_mode: str, takes_video: bool = False,
                 image_texts: Sequence[str] = (IMAGE_TEXT,)) -> None:
        if image_mode not in IMAGE_MODES:
            raise ValueError(f"unknown image mode {image_mode!r}; known: {sorted(IMAGE_MODES)}")
        hf = config.hf
        self.vocab_size = config.vocab_size
        self.hf = hf
        self.image_mode = image_mode
        self.takes_video = takes_video
        self.image_texts = tuple(image_texts)
        self.geometry = vision_geometry(hf)
        # The model tiles with its config's pinpoints, so the processor must too (transformers
        # reads the image processor's copy; the two agree in every released checkpoint).
        self.pinpoints: tuple[tuple[int, int], ...] = tuple(
            (int(h), int(w)) for h, w in hf_field(hf, "image_grid_pinpoints", default=())
        )
        self.pool_stride = int(hf_field(hf, "spatial_pool_stride", default=2))
        self.num_frames = default_num_frames(hf)
        self._prepared: dict[int, Prepared] = {}
        self._lock = threading.Lock()

    # --- settings -------------------------------------------------------------------------

    def _id_marker(self, modality: str, texts: tuple[str, ...], config_names: tuple[str, ...],
                   sentinel: int, tokenizer: Any) -> Marker:
        """The config's token index when it has one, else the tokenizer's id for the marker
        string, else the sentinel (then only prepended markers can stand for the media)."""
        tid = hf_field(self.hf, *config_names)
        if tid is None and tokenizer is not None:
            known = marker_token_ids(tokenizer, [Marker(modality, texts[:1], sentinel)])
            tid = next(iter(known)) if known else None
        return Marker(modality, texts, int(tid) if tid is not None else sentinel)

    def prepare(self, tokenizer: Any) -> Prepared:
        key = id(tokenizer)
        with self._lock:
            if key not in self._prepared:
                folders = settings_folders(self.hf, tokenizer)
                image_cfg = load_image_config(folders, self.geometry.image_size)
                video_cfg = load_image_config(folders[:1], self.geometry.image_size,
                                              VIDEO_PREPROCESSOR_FILE, fallback=image_cfg)
                kinds = [("image", self.image_texts, ("image_token_index", "image_token_id"),
                          LLAVA_IMAGE_INDEX)]
                if self.takes_video:
                    kinds.append(("video", (VIDEO_TEXT,), ("video_token_index", "video_token_id"),
                                  LLAVA_VIDEO_INDEX))
                text = tuple(Marker(mod, texts, sentinel) for mod, texts, _, sentinel in kinds)
                ids = tuple(self._id_marker(*kind, tokenizer) for kind in kinds)
                self._prepared[key] = Prepared(image_cfg, video_cfg, text, ids)
            return self._prepared[key]

    # --- features -------------------------------------------------------------------------

    def _check_side(self, pixels: np.ndarray, what: str) -> None:
        side = self.geometry.image_size
        if pixels.shape[-2:] != (side, side):
            raise ValueError(
                f"{what} preprocess to {pixels.shape[-2]}x{pixels.shape[-1]} pixels but the "
                f"vision tower takes {side}x{side}: check preprocessor_config.json"
            )

    def image_features(self, image: Any, cfg: ImageConfig) -> Features:
        pixels, meta, tokens = IMAGE_MODES[self.image_mode](self, image, cfg)
        self._check_side(pixels, "images")
        return Features("image", pixels.tobytes(), "float32", pixels.shape, tokens, meta)

    def video_features(self, frames: np.ndarray, cfg: ImageConfig) -> Features:
        pixels = np.ascontiguousarray(np.stack([clip_view(f, cfg) for f in frames]))
        self._check_side(pixels, "video frames")
        tokens = geometry.llava_next_video_num_tokens(len(frames), self.geometry,
                                                      self.pool_stride)
        return Features("video", pixels.tobytes(), "float32", pixels.shape, tokens)

    # --- the InputProcessor protocol ------------------------------------------------------

    def process(
        self,
        prompt: str | list[int],
        images: Sequence[MediaRef],
        videos: Sequence[MediaRef],
        tokenizer: Any,
    ) -> tuple[list[int], list[MultimodalItem]]:
        prep = self.prepare(tokenizer)
        if videos and not self.takes_video:
            raise ValueError("this model takes images only, not videos")
        markers = prep.text_markers if isinstance(prompt, str) else prep.id_markers
        ids = prompt_ids(prompt, markers, {"image": len(images), "video": len(videos)},
                         tokenizer)
        media: dict[int, list[Features]] = {
            markers[0].token_id: [self.image_features(load_image(r), prep.image_cfg)
                                  for r in images],
        }
        if self.takes_video:
            feats = []
            for entry in videos:
                ref, count = video_request(entry, self.num_frames)
                feats.append(self.video_features(read_frames(ref, count), prep.video_cfg))
            media[markers[1].token_id] = feats
        return splice_items(ids, media, self.vocab_size)


# --- image modes: (processor, PIL image, settings) -> (pixels, meta, num_tokens) ------------

ImageMode = Callable[[LlavaInputProcessor, Any, ImageConfig],
                     tuple[np.ndarray, dict[str, Any], int]]


def _clip(proc: LlavaInputProcessor, image: Any, cfg: ImageConfig) -> tuple:
    return preprocess_clip(image, cfg), {}, geometry.llava_num_tokens(proc.geometry)


def _pad(proc: LlavaInputProcessor, image: Any, cfg: ImageConfig) -> tuple:
    pixels = preprocess_clip(image, cfg, pad_square=True)
    return pixels, {}, geometry.llava_num_tokens(proc.geometry)


def _anyres(proc: LlavaInputProcessor, image: Any, cfg: ImageConfig) -> tuple:
    pins = proc.pinpoints or cfg.image_grid_pinpoints
    if not pins:
        raise ValueError("anyres needs image_grid_pinpoints in the model or processor config")
    pixels, size = preprocess_anyres(image, cfg, pins)
    tokens = geometry.llava_next_num_tokens(size, pins, proc.geometry)
    return pixels, {"image_size": [size[0], size[1]]}, tokens


IMAGE_MODES: dict[str, ImageMode] = {"clip": _clip, "pad": _pad, "anyres": _anyres}


# --- factories, one per architecture (entry points of "sglang.input_processors") ------------

def llava(config: ModelConfig) -> LlavaInputProcessor:
    """LlavaForConditionalGeneration (LLaVA 1.5, transformers layout)."""
    return LlavaInputProcessor(config, "clip")


def llava_next(config: ModelConfig) -> LlavaInputProcessor:
    """LlavaNextForConditionalGeneration (LLaVA 1.6 / NeXT)."""
    return LlavaInputProcessor(config, "anyres")


def llava_next_video(config: ModelConfig) -> LlavaInputProcessor:
    """LlavaNextVideoForConditionalGeneration: anyres images and sampled video frames."""
    return LlavaInputProcessor(config, "anyres", takes_video=True)


# The original layout's image_aspect_ratio -> image mode ("anyres_max_9" and kin start so).
ASPECT_MODES = {"pad": "pad", "square": "clip", "anyres": "anyres"}


def original_layout(config: ModelConfig) -> LlavaInputProcessor:
    """LlavaLlamaForCausalLM / LlavaMistralForCausalLM (liuhaotian checkpoints, Yi-VL): the
    image mode follows `image_aspect_ratio`, and Yi-VL's `<image_placeholder>` marks images
    too."""
    aspect = str(hf_field(config.hf, "image_aspect_ratio", default="square") or "square")
    key = "anyres" if aspect.startswith("anyres") else aspect
    if key not in ASPECT_MODES:
        raise ValueError(f"unsupported image_aspect_ratio {aspect!r}; known: "
                         f"{sorted(ASPECT_MODES)}")
    return LlavaInputProcessor(config, ASPECT_MODES[key],
                               image_texts=(IMAGE_TEXT, YI_IMAGE_TEXT))
