"""Torch-free geometry of the LLaVA family: anyres tiling, unpadding and placeholder token counts.

This is the single source both the input processor (how many placeholder tokens to splice) and the
models (how many embedding rows they return) use, so the two can never disagree. Every formula
follows what transformers' LLaVA / LLaVA-NeXT / LLaVA-NeXT-Video models compute, including their
rounding, so counts match its processors for any image size.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

SELECT_STRATEGIES = ("default", "full")


@dataclass(frozen=True)
class VisionGeometry:
    """What the token counts depend on: the tower's square input side, its patch, and the strategy.

    `select_strategy` "default" drops the CLS row of every image, "full" keeps it.
    """

    image_size: int
    patch_size: int
    select_strategy: str = "default"

    def __post_init__(self) -> None:
        if self.select_strategy not in SELECT_STRATEGIES:
            raise ValueError(
                f"vision_feature_select_strategy must be one of {SELECT_STRATEGIES}, "
                f"got {self.select_strategy!r}"
            )

    @property
    def grid_side(self) -> int:
        """Patches along one side of a tower input."""
        return self.image_size // self.patch_size

    @property
    def patches_per_image(self) -> int:
        return self.grid_side * self.grid_side

    @property
    def tokens_per_image(self) -> int:
        """Rows one tower input yields after the select strategy."""
        return self.patches_per_image + (1 if self.select_strategy == "full" else 0)

    @classmethod
    def from_hf_config(cls, config: Any) -> VisionGeometry:
        """Build from a transformers Llava* config object or its dict form."""
        vision = _field(config, "vision_config")
        strategy = _field(config, "vision_feature_select_strategy", "default")
        return cls(
            image_size=int(_field(vision, "image_size")),
            patch_size=int(_field(vision, "patch_size")),
            select_strategy=str(strategy),
        )


def _field(obj: Any, name: str, default: Any = None) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(name, default)
    return getattr(obj, name, default)


def select_best_resolution(
    height: int, width: int, pinpoints: Sequence[Sequence[int]]
) -> tuple[int, int]:
    """The (height, width) pinpoint that keeps the most image resolution, then wastes the least.

    Ties on both keep the earlier pinpoint, as transformers does (strict comparisons).
    """
    best: tuple[int, int] | None = None
    best_effective = 0
    best_wasted = math.inf
    for cand_h, cand_w in pinpoints:
        scale = min(cand_w / width, cand_h / height)
        # int() truncation (not round) is what transformers uses; it changes ties for odd sizes.
        down_w, down_h = int(width * scale), int(height * scale)
        effective = min(down_w * down_h, width * height)
        wasted = cand_w * cand_h - effective
        if effective > best_effective or (effective == best_effective and wasted < best_wasted):
            best_effective, best_wasted = effective, wasted
            best = (int(cand_h), int(cand_w))
    if best is None:
        raise ValueError("image_grid_pinpoints is empty")
    return best


def anyres_tile_grid(
    image_size: Sequence[int], pinpoints: Sequence[Sequence[int]], tile_side: int
) -> tuple[int, int]:
    """(rows, cols) of tower-sized tiles the best resolution is cut into."""
    best_h, best_w = select_best_resolution(int(image_size[0]), int(image_size[1]), pinpoints)
    return best_h // tile_side, best_w // tile_side


def anyres_num_tiles(
    image_size: Sequence[int], pinpoints: Sequence[Sequence[int]], tile_side: int
) -> int:
    """Tiles the image processor crops (a partial tile counts): excludes the base image."""
    best_h, best_w = select_best_resolution(int(image_size[0]), int(image_size[1]), pinpoints)
    return math.ceil(best_h / tile_side) * math.ceil(best_w / tile_side)


def anyres_num_patches(
    image_size: Sequence[int], pinpoints: Sequence[Sequence[int]], tile_side: int
) -> int:
    """Rows of `pixel_values` for one NeXT image: the base image plus its tiles."""
    return 1 + anyres_num_tiles(image_size, pinpoints, tile_side)


def unpadded_feature_shape(
    image_size: Sequence[int], feature_rows: int, feature_cols: int
) -> tuple[int, int]:
    """(rows, cols) left of a padded feature grid once the letterbox padding is cut off.

    The processor letterboxes the original (height, width) into the best resolution; the model cuts
    the same fraction off the tiled feature grid, symmetric on both sides, along the padded axis.
    """
    orig_h, orig_w = int(image_size[0]), int(image_size[1])
    if orig_w / orig_h > feature_cols / feature_rows:
        # round(..., 7) first, as transformers does, so float noise never flips an exact integer.
        new_rows = int(round(orig_h * (feature_cols / orig_w), 7))
        padding = (feature_rows - new_rows) // 2
        return feature_rows - 2 * padding, feature_cols
    new_cols = int(round(orig_w * (feature_rows / orig_h), 7))
    padding = (feature_cols - new_cols) // 2
    return feature_rows, feature_cols - 2 * padding


def anyres_feature_shape(
    image_size: Sequence[int], pinpoints: Sequence[Sequence[int]], geometry: VisionGeometry
) -> tuple[int, int]:
    """(rows, cols) of the unpadded tile features of one NeXT image (before the newline column)."""
    tile_rows, tile_cols = anyres_tile_grid(image_size, pinpoints, geometry.image_size)
    side = geometry.grid_side
    return unpadded_feature_shape(image_size, tile_rows * side, tile_cols * side)


def llava_num_tokens(geometry: VisionGeometry) -> int:
    """Embedding rows of one LLaVA 1.5 / Yi-VL image."""
    return geometry.tokens_per_image


def llava_next_num_tokens(
    image_size: Sequence[int], pinpoints: Sequence[Sequence[int]], geometry: VisionGeometry
) -> int:
    """Embedding rows of one NeXT image of original (height, width): base + tiles + newlines."""
    if geometry.select_strategy != "default":
        # The tile grid reshape needs exactly grid_side**2 rows per tile (transformers fails too).
        raise ValueError("anyres needs vision_feature_select_strategy 'default'")
    rows, cols = anyres_feature_shape(image_size, pinpoints, geometry)
    return geometry.tokens_per_image + rows * (cols + 1)


def pooled_grid_side(geometry: VisionGeometry, stride: int = 2) -> int:
    """Side of a frame's feature grid after the video model's stride x stride pooling (floor)."""
    return geometry.grid_side // stride


def llava_next_video_num_tokens(
    num_frames: int, geometry: VisionGeometry, pool_stride: int = 2
) -> int:
    """Embedding rows of one NeXT-Video clip: pooled CLS-free frame grids, frames back to back."""
    if geometry.select_strategy != "default":
        raise ValueError("video pooling needs vision_feature_select_strategy 'default'")
    side = pooled_grid_side(geometry, pool_stride)
    return num_frames * side * side
