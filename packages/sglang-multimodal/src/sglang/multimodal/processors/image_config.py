"""The image processor settings of a model: read from its preprocessor_config.json when one is
found (model folder, tokenizer folder, the original layout's CLIP tower folder), CLIP's defaults
otherwise. Field names and meanings follow transformers' image processors."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# OpenAI CLIP's normalization (transformers' OPENAI_CLIP_MEAN / OPENAI_CLIP_STD).
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
# ViT-L/14-336, the tower of every LLaVA 1.5 / NeXT checkpoint.
CLIP_SIZE = 336
BICUBIC = 3  # PIL.Image.Resampling.BICUBIC
PREPROCESSOR_FILE = "preprocessor_config.json"


@dataclass(frozen=True)
class ImageConfig:
    shortest_edge: int | None = CLIP_SIZE  # resize target: short side ...
    height: int | None = None  # ... or a fixed size when shortest_edge is None
    width: int | None = None
    crop_height: int = CLIP_SIZE
    crop_width: int = CLIP_SIZE
    resample: int = BICUBIC
    do_resize: bool = True
    do_center_crop: bool = True
    do_rescale: bool = True
    rescale_factor: float = 1 / 255
    do_normalize: bool = True
    image_mean: tuple[float, ...] = CLIP_MEAN
    image_std: tuple[float, ...] = CLIP_STD
    # transformers' LlavaImageProcessor do_pad: centre on a mean-coloured square first.
    do_pad_square: bool = False
    image_grid_pinpoints: tuple[tuple[int, int], ...] = field(default=())
    source: str = "defaults"  # the file it came from, for messages

    @property
    def tile_size(self) -> int:
        """LLaVA-NeXT's tile side: the crop height, as transformers picks it."""
        return self.crop_height or self.height or self.shortest_edge or CLIP_SIZE

    @property
    def base_size(self) -> int:
        """LLaVA-NeXT's base image side (the whole image squashed to a square)."""
        if self.height and self.width:
            return self.height
        return self.shortest_edge or CLIP_SIZE

    @classmethod
    def defaults(cls, image_size: int | None = None) -> ImageConfig:
        side = image_size or CLIP_SIZE
        return cls(shortest_edge=side, crop_height=side, crop_width=side)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], source: str = "dict",
                  image_size: int | None = None) -> ImageConfig:
        """From preprocessor_config.json contents; missing keys take CLIP's values (sized to
        the vision tower when `image_size` is given)."""
        base = cls.defaults(image_size)
        size = raw.get("size", None)
        shortest, height, width = base.shortest_edge, base.height, base.width
        if isinstance(size, int):
            shortest = size
        elif isinstance(size, Mapping):
            if "shortest_edge" in size:
                shortest = int(size["shortest_edge"])
            elif "height" in size and "width" in size:
                shortest, height, width = None, int(size["height"]), int(size["width"])
        crop = raw.get("crop_size", None)
        crop_h, crop_w = base.crop_height, base.crop_width
        if isinstance(crop, int):
            crop_h = crop_w = crop
        elif isinstance(crop, Mapping):
            crop_h, crop_w = int(crop["height"]), int(crop["width"])
        pins = raw.get("image_grid_pinpoints") or ()
        return cls(
            shortest_edge=shortest, height=height, width=width,
            crop_height=crop_h, crop_width=crop_w,
            resample=int(raw.get("resample", BICUBIC)),
            do_resize=bool(raw.get("do_resize", True)),
            do_center_crop=bool(raw.get("do_center_crop", True)),
            do_rescale=bool(raw.get("do_rescale", True)),
            rescale_factor=float(raw.get("rescale_factor", 1 / 255)),
            do_normalize=bool(raw.get("do_normalize", True)),
            image_mean=_triple(raw.get("image_mean"), CLIP_MEAN),
            image_std=_triple(raw.get("image_std"), CLIP_STD),
            # Only LlavaImageProcessor pads to a square under do_pad; elsewhere (CLIP, NeXT)
            # do_pad means padding a batch to one shape, a no-op for one image.
            do_pad_square=bool(raw.get("do_pad", False))
            and str(raw.get("image_processor_type", "")).startswith("LlavaImageProcessor"),
            image_grid_pinpoints=tuple((int(h), int(w)) for h, w in pins),
            source=source,
        )


def _triple(value: Any, default: tuple[float, ...]) -> tuple[float, ...]:
    if value is None:
        return default
    if isinstance(value, int | float):
        return (float(value),) * 3
    return tuple(float(v) for v in value)


def find_preprocessor_config(
    folders: Iterable[str | Path | None], filename: str = PREPROCESSOR_FILE
) -> Path | None:
    """The first `filename` among `folders` (skipping None and non-folders)."""
    for folder in folders:
        if not folder:
            continue
        path = Path(folder).expanduser() / filename
        if path.is_file():
            return path
    return None


def load_image_config(
    folders: Iterable[str | Path | None],
    image_size: int | None = None,
    filename: str = PREPROCESSOR_FILE,
    fallback: ImageConfig | None = None,
) -> ImageConfig:
    """Settings from the first folder holding `filename`; else `fallback`, else CLIP's
    defaults at the vision tower's `image_size`. A file that cannot be parsed is an error
    (silently serving with other settings would give wrong answers)."""
    path = find_preprocessor_config(folders, filename)
    if path is None:
        return fallback if fallback is not None else ImageConfig.defaults(image_size)
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"cannot read image processor settings {path}: {e}") from e
    if not isinstance(raw, dict):
        raise ValueError(f"image processor settings {path} are not a JSON object")
    return ImageConfig.from_dict(raw, str(path), image_size)
