"""What a LLaVA-family input processor reads from a model's config (torch-free): marker ids,
vision geometry, anyres pinpoints, the folders that may hold preprocessor settings, and the
default number of video frames."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sglang.multimodal.geometry import VisionGeometry

# The id original LLaVA (and Yi-VL) code uses for <image>: outside every vocabulary, so it can
# only stand for an image marker in a prompt this processor tokenized itself.
LLAVA_IMAGE_INDEX = -200
LLAVA_VIDEO_INDEX = -201
# Frames sampled from a video reference that does not say how many: transformers' and the
# LLaVA-NeXT-Video model card's examples sample 8, and 8 frames of a 7B model (8 x 144 tokens)
# fit any context a NeXT-Video checkpoint ships with. A model folder can override it with
# `num_frames` in its video_preprocessor_config.json or config.json.
DEFAULT_NUM_FRAMES = 8
VIDEO_PREPROCESSOR_FILE = "video_preprocessor_config.json"


def hf_field(hf: Any, *names: str, default: Any = None) -> Any:
    """The first of `names` set on the raw config (object or dict), else `default`."""
    for name in names:
        value = hf.get(name) if isinstance(hf, Mapping) else getattr(hf, name, None)
        if value is not None:
            return value
    return default


def model_folder(hf: Any) -> Path | None:
    name = hf_field(hf, "_name_or_path", "name_or_path")
    return Path(name).expanduser() if name and Path(name).expanduser().is_dir() else None


def tower_folder(hf: Any) -> Path | None:
    """The original layout's separate CLIP folder (`mm_vision_tower`), absolute or relative to
    the model folder (Yi-VL ships it as ./vit/...); None when it is not on disk (a hub id)."""
    tower = hf_field(hf, "mm_vision_tower", "vision_tower")
    if not isinstance(tower, str):
        return None
    path = Path(tower).expanduser()
    base = model_folder(hf)
    for candidate in (path, base / path if base is not None else None):
        if candidate is not None and candidate.is_dir():
            return candidate
    return None


def settings_folders(hf: Any, tokenizer: Any) -> list[Path | None]:
    """Where preprocessor_config.json is looked for, in order: the model folder, the tokenizer
    folder (the SGLang README serves liuhaotian/llava-v1.5-7b with llava-hf's tokenizer, which
    holds the settings), the CLIP tower folder of the original layout."""
    tok = getattr(tokenizer, "name_or_path", None) if tokenizer is not None else None
    tok_path = Path(tok).expanduser() if isinstance(tok, str) and tok else None
    return [model_folder(hf), tok_path if tok_path and tok_path.is_dir() else None,
            tower_folder(hf)]


def vision_geometry(hf: Any) -> VisionGeometry:
    if hf_field(hf, "vision_config") is None:
        raise ValueError(
            "this LLaVA-family config has no vision_config: cannot size its image tokens"
        )
    return VisionGeometry.from_hf_config(hf)


def default_num_frames(hf: Any) -> int:
    folder = model_folder(hf)
    if folder is not None and (folder / VIDEO_PREPROCESSOR_FILE).is_file():
        try:
            raw = json.loads((folder / VIDEO_PREPROCESSOR_FILE).read_text())
        except (OSError, ValueError):
            raw = {}
        if isinstance(raw, dict) and isinstance(raw.get("num_frames"), int):
            return int(raw["num_frames"])
    value = hf_field(hf, "num_frames")
    return int(value) if isinstance(value, int) and value > 0 else DEFAULT_NUM_FRAMES
