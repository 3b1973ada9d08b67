"""Image preprocessing equal to transformers' CLIP / LLaVA / LLaVA-NeXT image processors (PIL
variants), in numpy + Pillow only: the tokenizer process imports this and must not need torch.

Equality is by construction, not by approximation: every resize goes through Pillow with the
same target size, filter and uint8 input as transformers uses, and the rescale / normalize steps
use the same dtypes in the same order (uint8 -> float64 * factor -> float32, then float32
(x - mean) / std), so the pixel values come out bit-identical on the same Pillow build."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from sglang.multimodal.geometry import select_best_resolution
from sglang.multimodal.processors.image_config import ImageConfig


def to_rgb(image: Any) -> Any:
    """RGB with transparency composited onto white, as transformers' convert_to_rgb does (a
    plain `convert("RGB")` would expose whatever colour hides under transparent pixels)."""
    from PIL import Image

    if "A" in image.getbands() or image.info.get("transparency") is not None:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB")


def shortest_edge_size(height: int, width: int, shortest: int) -> tuple[int, int]:
    """(height, width) with the short side at `shortest` and the long side truncated, as
    transformers' get_resize_output_image_size(default_to_square=False) rounds it."""
    short, long = (width, height) if width <= height else (height, width)
    new_long = int(shortest * long / short)
    return (new_long, shortest) if width <= height else (shortest, new_long)


def resize(pixels: np.ndarray, height: int, width: int, resample: int) -> np.ndarray:
    """HWC uint8 -> HWC uint8 through Pillow (transformers' PIL backend resizes the same way)."""
    from PIL import Image

    if pixels.shape[:2] == (height, width):
        return pixels  # Pillow returns a copy for a same-size resize: identical values
    out = Image.fromarray(pixels).resize((width, height), resample=resample)
    return np.asarray(out)


def center_crop(pixels: np.ndarray, height: int, width: int) -> np.ndarray:
    """Crop around the centre, zero-padding first where the image is smaller than the crop
    (transformers pads such images rather than failing)."""
    h, w = pixels.shape[:2]
    if h < height or w < width:
        big_h, big_w = max(h, height), max(w, width)
        canvas = np.zeros((big_h, big_w, pixels.shape[2]), dtype=pixels.dtype)
        top, left = -(-(big_h - h) // 2), -(-(big_w - w) // 2)  # ceil, as transformers does
        canvas[top : top + h, left : left + w] = pixels
        pixels, h, w = canvas, big_h, big_w
    top, left = (h - height) // 2, (w - width) // 2
    return pixels[top : top + height, left : left + width]


def pad_to_square(pixels: np.ndarray, color: Sequence[int]) -> np.ndarray:
    """Centre the image on a square of `color` (LLaVA's expand2square / image_aspect_ratio
    "pad"; transformers' LlavaImageProcessor do_pad)."""
    h, w = pixels.shape[:2]
    if h == w:
        return pixels
    side = max(h, w)
    canvas = np.empty((side, side, pixels.shape[2]), dtype=pixels.dtype)
    canvas[:] = np.asarray(color, dtype=pixels.dtype)
    if w > h:
        top = (side - h) // 2
        canvas[top : top + h] = pixels
    else:
        left = (side - w) // 2
        canvas[:, left : left + w] = pixels
    return canvas


def pad_color(cfg: ImageConfig) -> tuple[int, ...]:
    return tuple(int(m * 255) for m in cfg.image_mean)


def normalize(pixels: np.ndarray, cfg: ImageConfig) -> np.ndarray:
    """HWC uint8 -> CHW float32: rescale then normalize, in transformers' dtypes and order."""
    chw = np.transpose(pixels, (2, 0, 1))
    out = chw.astype(np.float32)
    if cfg.do_rescale:
        out = (chw.astype(np.float64) * cfg.rescale_factor).astype(np.float32)
    if cfg.do_normalize:
        mean = np.asarray(cfg.image_mean, dtype=np.float32)[:, None, None]
        std = np.asarray(cfg.image_std, dtype=np.float32)[:, None, None]
        out = (out - mean) / std
    return out


def clip_view(pixels: np.ndarray, cfg: ImageConfig) -> np.ndarray:
    """One view through CLIP's steps: resize (shortest edge or fixed size), centre crop,
    rescale, normalize. HWC uint8 in, CHW float32 out."""
    if cfg.do_resize:
        h, w = pixels.shape[:2]
        if cfg.shortest_edge is not None:
            h, w = shortest_edge_size(h, w, cfg.shortest_edge)
        else:
            h, w = cfg.height, cfg.width  # type: ignore[assignment]
        pixels = resize(pixels, h, w, cfg.resample)
    if cfg.do_center_crop:
        pixels = center_crop(pixels, cfg.crop_height, cfg.crop_width)
    return normalize(pixels, cfg)


def as_pixels(image: Any) -> np.ndarray:
    """A PIL image (any mode) or an HWC uint8 RGB array -> HWC uint8 RGB array."""
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"expected an HxWx3 uint8 RGB array, got {image.dtype} {image.shape}")
        return image
    return np.asarray(to_rgb(image))


def preprocess_clip(image: Any, cfg: ImageConfig, pad_square: bool = False) -> np.ndarray:
    """LLaVA 1.5 / Yi-VL / video frames: [1, 3, S, S] float32. `pad_square` first centres the
    image on a square of the mean colour (original LLaVA's image_aspect_ratio "pad")."""
    pixels = as_pixels(image)
    if pad_square or cfg.do_pad_square:
        pixels = pad_to_square(pixels, pad_color(cfg))
    return np.ascontiguousarray(clip_view(pixels, cfg)[None])


def letterbox_size(height: int, width: int, target_h: int, target_w: int) -> tuple[int, int]:
    """The size an image is resized to inside an anyres resolution: aspect kept, the tighter
    side filled, the other rounded up (ceil, capped), as transformers' get_patch_output_size.
    Pixel work only: which resolution, and how many tokens follow, is geometry.py's."""
    scale_w, scale_h = target_w / width, target_h / height
    if scale_w < scale_h:
        return min(math.ceil(height * scale_w), target_h), target_w
    return target_h, min(math.ceil(width * scale_h), target_w)


def anyres_views(
    pixels: np.ndarray, cfg: ImageConfig, pinpoints: Sequence[Sequence[int]]
) -> list[np.ndarray]:
    """LLaVA-NeXT's uint8 views: the whole image squashed to the base size, then the tiles of
    the image letterboxed into the best resolution (black padding centred), row-major, as
    transformers orders them."""
    h, w = pixels.shape[:2]
    grid_h, grid_w = select_best_resolution(h, w, pinpoints)
    fit_h, fit_w = letterbox_size(h, w, grid_h, grid_w)
    fitted = resize(pixels, fit_h, fit_w, cfg.resample)
    top, left = (grid_h - fit_h) // 2, (grid_w - fit_w) // 2
    canvas = np.zeros((grid_h, grid_w, 3), dtype=np.uint8)
    canvas[top : top + fit_h, left : left + fit_w] = fitted
    tile = cfg.tile_size
    tiles = [canvas[y : y + tile, x : x + tile]
             for y in range(0, grid_h, tile) for x in range(0, grid_w, tile)]
    base = resize(pixels, cfg.base_size, cfg.base_size, cfg.resample)
    return [base, *tiles]


def preprocess_anyres(
    image: Any, cfg: ImageConfig, pinpoints: Sequence[Sequence[int]]
) -> tuple[np.ndarray, tuple[int, int]]:
    """LLaVA-NeXT: ([1 + tiles, 3, S, S] float32, (height, width) of the original image)."""
    pixels = as_pixels(image)
    views = anyres_views(pixels, cfg, pinpoints)
    stacked = np.stack([clip_view(v, cfg) for v in views])
    return np.ascontiguousarray(stacked), (int(pixels.shape[0]), int(pixels.shape[1]))
