"""LLaVA-NeXT (1.6): anyres images. Each image arrives as its base view plus the tiles of the best
grid (`image_grid_pinpoints`); the tile features are stitched into one grid, the letterbox
padding is cut off again ("spatial_unpad"), an `image_newline` row-end column is appended, and
the base view's rows go first, as transformers' LlavaNext computes it."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from sglang.multimodal.geometry import (
    anyres_num_patches,
    anyres_tile_grid,
    llava_next_num_tokens,
    unpadded_feature_shape,
)
from sglang.multimodal.models.llava import LlavaForConditionalGeneration
from sglang.runtime.messages import MultimodalItem
from sglang.runtime.models.config import ModelConfig

# The item meta key holding the original image's [height, width] (transformers' `image_sizes`).
IMAGE_SIZE_META = "image_size"


class ImageNewline(nn.Module):
    """The learned row-end embedding. A module (checkpoint `image_newline` -> `image_newline.weight`)
    because the runtime's loader addresses parameters as `<module>.<name>`."""

    def __init__(self, hidden: int, dtype: torch.dtype) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(hidden, dtype=dtype), requires_grad=False)


class LlavaNextForConditionalGeneration(LlavaForConditionalGeneration):
    embedders: ClassVar[dict[str, str]] = {"image": "embed_anyres_image"}

    def __init__(self, config: ModelConfig | Any, dtype: torch.dtype = torch.float32) -> None:
        super().__init__(config, dtype)
        hf = self.model_config.hf
        self.image_grid_pinpoints: list[list[int]] = [list(map(int, p)) for p in hf.image_grid_pinpoints]
        self.image_newline = ImageNewline(self.model_config.hidden_size, dtype)

    def embed_anyres_image(self, item: MultimodalItem, features: torch.Tensor) -> torch.Tensor:
        size = item.meta.get(IMAGE_SIZE_META)
        if size is None or len(size) != 2:
            raise ValueError(f"a LLaVA-NeXT image item needs meta {IMAGE_SIZE_META!r} = [height, width]")
        height, width = int(size[0]), int(size[1])
        side = self.geometry.image_size
        want = anyres_num_patches((height, width), self.image_grid_pinpoints, side)
        if features.shape[0] != want:
            raise ValueError(f"a {height}x{width} image has {want} anyres patches (base + tiles), "
                             f"got {features.shape[0]}")
        projected = self.multi_modal_projector(features)
        base, tiles = projected[0], projected[1:]
        grid = self._stitch(tiles, (height, width))
        newline = self.image_newline.weight.to(grid.dtype).expand(grid.shape[0], 1, -1)
        rows = torch.cat([base, torch.cat([grid, newline], dim=1).flatten(0, 1)])
        assert rows.shape[0] == llava_next_num_tokens((height, width), self.image_grid_pinpoints, self.geometry)
        return rows

    def _stitch(self, tiles: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """Tile features [rows * cols, g * g, D] -> the unpadded feature grid [r, c, D]."""
        g = self.geometry.grid_side
        tile_rows, tile_cols = anyres_tile_grid(size, self.image_grid_pinpoints, self.geometry.image_size)
        dim = tiles.shape[-1]
        # tile (i, j), patch (y, x) -> grid position (i * g + y, j * g + x)
        grid = tiles.view(tile_rows, tile_cols, g, g, dim).permute(0, 2, 1, 3, 4)
        grid = grid.reshape(tile_rows * g, tile_cols * g, dim)
        full_rows, full_cols = grid.shape[:2]
        rows, cols = unpadded_feature_shape(size, full_rows, full_cols)
        top, left = (full_rows - rows) // 2, (full_cols - cols) // 2
        return grid[top : top + rows, left : left + cols]
