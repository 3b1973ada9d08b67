"""geometry.py against transformers' own anyres helpers and processor token counts."""

from __future__ import annotations

import types

import pytest

from sglang.multimodal import geometry as geo

SIZES = [(56, 140), (140, 56), (56, 56), (100, 37), (33, 200), (300, 301), (17, 17), (90, 160), (57, 113)]
PINPOINTS = [[56, 56], [56, 112], [112, 56], [112, 112], [56, 168], [168, 56]]
LARGE_PINPOINTS = [[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]]


def _processor_stub(cls: type, pinpoints: list[list[int]], patch: int) -> object:
    """A bare transformers processor carrying only what its token-count methods read."""
    stub = object.__new__(cls)
    stub.image_processor = types.SimpleNamespace(image_grid_pinpoints=pinpoints)
    stub.patch_size = patch
    stub.num_additional_image_tokens = 1
    stub.vision_feature_select_strategy = "default"
    return stub


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("pinpoints,side,patch", [(PINPOINTS, 56, 14), (LARGE_PINPOINTS, 336, 14)])
def test_anyres_matches_transformers(size: tuple[int, int], pinpoints: list, side: int, patch: int) -> None:
    from transformers.image_processing_utils import select_best_resolution
    from transformers.models.llava_next.modeling_llava_next import (
        get_anyres_image_grid_shape,
        image_size_to_num_patches,
    )
    from transformers.models.llava_next.processing_llava_next import LlavaNextProcessor

    assert geo.select_best_resolution(size[0], size[1], pinpoints) == tuple(
        select_best_resolution(list(size), pinpoints)
    )
    assert geo.anyres_tile_grid(size, pinpoints, side) == tuple(
        get_anyres_image_grid_shape(list(size), pinpoints, side)
    )
    assert geo.anyres_num_patches(size, pinpoints, side) == image_size_to_num_patches(list(size), pinpoints, side)

    vision = geo.VisionGeometry(image_size=side, patch_size=patch)
    stub = _processor_stub(LlavaNextProcessor, pinpoints, patch)
    expected = stub._get_number_of_features(size[0], size[1], side, side) - 1  # "default" drops the CLS
    assert geo.llava_next_num_tokens(size, pinpoints, vision) == expected


def test_unpadding_matches_transformers_unpad_image() -> None:
    torch = pytest.importorskip("torch")
    from transformers.models.llava_next.modeling_llava_next import unpad_image

    for size in SIZES:
        for rows, cols in [(8, 8), (4, 12), (12, 4), (24, 48)]:
            grid = torch.zeros(1, rows, cols)
            assert geo.unpadded_feature_shape(size, rows, cols) == tuple(unpad_image(grid, list(size)).shape[1:])


def test_llava_and_video_counts() -> None:
    from transformers import CLIPVisionConfig, LlavaNextVideoConfig

    config = LlavaNextVideoConfig(vision_config=CLIPVisionConfig(image_size=336, patch_size=14).to_dict())
    vision = geo.VisionGeometry.from_hf_config(config)
    assert (vision.grid_side, vision.select_strategy) == (24, "default")
    assert geo.llava_num_tokens(vision) == 576
    assert geo.llava_num_tokens(geo.VisionGeometry(336, 14, "full")) == 577
    assert geo.llava_next_video_num_tokens(16, vision) == 16 * 144
    assert geo.llava_next_video_num_tokens(8, geo.VisionGeometry(56, 14)) == 8 * 4
    with pytest.raises(ValueError):
        geo.VisionGeometry(56, 14, "cls")
    with pytest.raises(ValueError):
        geo.llava_next_num_tokens((10, 10), PINPOINTS, geo.VisionGeometry(56, 14, "full"))
