"""Our numpy + Pillow preprocessing against transformers' PIL image processors on the same input.

Both resize through Pillow on the same uint8 pixels with the same filter and target size, and
rescale / normalize in the same dtypes, so the values are expected to be bit-identical; the
tolerance (1e-6, far below one uint8 step of 1/255/std ~ 0.015) only allows for a Pillow or
numpy build that vectorizes float32 division differently."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("PIL")
transformers = pytest.importorskip("transformers")
from PIL import Image  # noqa: E402

from sglang.multimodal.processors.image import (  # noqa: E402
    preprocess_anyres,
    preprocess_clip,
    to_rgb,
)
from sglang.multimodal.processors.image_config import (  # noqa: E402
    CLIP_MEAN,
    ImageConfig,
    load_image_config,
)

TOL = 1e-6
# (height, width): square, tall, wide, tiny, odd, very elongated, smaller than the crop.
SIZES = [(56, 56), (200, 90), (90, 200), (5, 7), (131, 97), (37, 300), (30, 40), (640, 480)]
PINPOINTS = [[56, 112], [112, 56], [112, 112], [168, 56], [56, 168]]


def _image(h: int, w: int, seed: int = 0, mode: str = "RGB") -> Image.Image:
    rng = np.random.default_rng(seed + h * 1000 + w)
    channels = 4 if mode == "RGBA" else 3
    # Smooth gradients plus noise: resampling filters see both edges and flat areas.
    yy, xx = np.mgrid[0:h, 0:w]
    base = (yy * 255 // max(h - 1, 1) + xx * 128 // max(w - 1, 1))[..., None] % 256
    noise = rng.integers(0, 64, (h, w, channels))
    return Image.fromarray(((base + noise) % 256).astype(np.uint8), mode)


def _clip_ref(side: int, **kw: object) -> object:
    return transformers.CLIPImageProcessorPil(
        size={"shortest_edge": side}, crop_size={"height": side, "width": side}, **kw
    )


@pytest.mark.parametrize("hw", SIZES)
def test_clip_matches_transformers(hw: tuple[int, int]) -> None:
    img = _image(*hw)
    ref = _clip_ref(56)(images=img, return_tensors="np")["pixel_values"]
    ours = preprocess_clip(img, ImageConfig.defaults(56))
    assert ours.shape == ref.shape == (1, 3, 56, 56)
    assert ours.dtype == np.float32 and ours.flags.c_contiguous
    np.testing.assert_allclose(ours, ref, rtol=0, atol=TOL)


@pytest.mark.parametrize("hw", SIZES[:4])
def test_clip_default_336_matches_transformers(hw: tuple[int, int]) -> None:
    img = _image(*hw, seed=3)
    ref = _clip_ref(336)(images=img, return_tensors="np")["pixel_values"]
    np.testing.assert_allclose(preprocess_clip(img, ImageConfig()), ref, rtol=0, atol=TOL)


@pytest.mark.parametrize("hw", SIZES)
def test_pad_to_square_matches_llava_image_processor(hw: tuple[int, int]) -> None:
    img = _image(*hw, seed=1)
    ref = transformers.LlavaImageProcessorPil(
        size={"shortest_edge": 56}, crop_size={"height": 56, "width": 56}, do_pad=True
    )(images=img, return_tensors="np")["pixel_values"]
    ours = preprocess_clip(img, ImageConfig.defaults(56), pad_square=True)
    np.testing.assert_allclose(ours, ref, rtol=0, atol=TOL)


@pytest.mark.parametrize("hw", SIZES)
def test_anyres_matches_llava_next_image_processor(hw: tuple[int, int]) -> None:
    img = _image(*hw, seed=2)
    ref = transformers.LlavaNextImageProcessorPil(
        size={"shortest_edge": 56}, crop_size={"height": 56, "width": 56},
        image_grid_pinpoints=PINPOINTS,
    )(images=img, return_tensors="np")
    ours, size = preprocess_anyres(img, ImageConfig.defaults(56), PINPOINTS)
    assert size == tuple(int(v) for v in ref["image_sizes"][0]) == hw
    assert ours.shape == ref["pixel_values"][0].shape and ours.shape[0] > 1
    np.testing.assert_allclose(ours, ref["pixel_values"][0], rtol=0, atol=TOL)


def test_anyres_real_pinpoints_at_336() -> None:
    pins = [[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]]
    img = _image(300, 1000, seed=4)
    ref = transformers.LlavaNextImageProcessorPil(
        size={"shortest_edge": 336}, crop_size={"height": 336, "width": 336},
        image_grid_pinpoints=pins,
    )(images=img, return_tensors="np")["pixel_values"][0]
    ours, _ = preprocess_anyres(img, ImageConfig(), pins)
    assert ours.shape == ref.shape == (4, 3, 336, 336)  # base + 1x3 tiles
    np.testing.assert_allclose(ours, ref, rtol=0, atol=TOL)


def test_transparency_composites_on_white_like_transformers() -> None:
    img = _image(40, 60, seed=5, mode="RGBA")
    ref = _clip_ref(56)(images=img, return_tensors="np")["pixel_values"]
    np.testing.assert_allclose(preprocess_clip(img, ImageConfig.defaults(56)), ref, atol=TOL)
    assert np.asarray(to_rgb(img)).shape == (40, 60, 3)


def test_fixed_size_and_custom_mean_from_preprocessor_config(tmp_path: Path) -> None:
    raw = {
        "image_processor_type": "CLIPImageProcessor", "size": {"height": 48, "width": 64},
        "crop_size": {"height": 40, "width": 40}, "image_mean": [0.5, 0.5, 0.5],
        "image_std": [0.25, 0.5, 0.75], "resample": 2,
    }
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(raw))
    cfg = load_image_config([None, tmp_path / "missing", tmp_path])
    assert cfg.source.endswith("preprocessor_config.json") and cfg.shortest_edge is None
    img = _image(100, 70, seed=6)
    ref = transformers.CLIPImageProcessorPil(
        size={"height": 48, "width": 64}, crop_size={"height": 40, "width": 40},
        image_mean=[0.5, 0.5, 0.5], image_std=[0.25, 0.5, 0.75], resample=2,
    )(images=img, return_tensors="np")["pixel_values"]
    np.testing.assert_allclose(preprocess_clip(img, cfg), ref, rtol=0, atol=TOL)


def test_defaults_follow_the_vision_tower_and_bad_files_are_errors(tmp_path: Path) -> None:
    cfg = load_image_config([tmp_path], image_size=448)
    assert (cfg.shortest_edge, cfg.crop_height, cfg.image_mean) == (448, 448, CLIP_MEAN)
    (tmp_path / "preprocessor_config.json").write_text("{not json")
    with pytest.raises(ValueError, match="cannot read image processor settings"):
        load_image_config([tmp_path])


def test_llava_processor_do_pad_setting_pads_only_for_llava_type() -> None:
    llava = ImageConfig.from_dict({"image_processor_type": "LlavaImageProcessor", "do_pad": True})
    nxt = ImageConfig.from_dict({"image_processor_type": "LlavaNextImageProcessor",
                                 "do_pad": True})
    assert llava.do_pad_square and not nxt.do_pad_square
