"""Test-side helpers around transformers' preprocessing: items built from its image processor's
pixel_values (the processor/model contract), a minimal input processor producing them, and the
prompt log-prob / greedy comparison against a transformers reference model.

`HFItemsProcessor` lets model tests run without the package's real input processors; register it
with `plugins.INPUT_PROCESSORS.register(arch, HFItemsProcessor)`.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator, Sequence
from typing import Any

import mm_tiny
import numpy as np
import pytest
import torch

from sglang.multimodal import geometry as geo

ATOL = 1e-4
TOP_K = 20
NEW_TOKENS = 16


def kind_of(hf: Any) -> str:
    """Which transformers family a (possibly adapted) LLaVA config behaves as."""
    if getattr(hf, "video_token_id", None) is not None or getattr(hf, "video_token_index", None) is not None:
        return "llava_next_video"
    return "llava_next" if getattr(hf, "image_grid_pinpoints", None) else "llava"


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
        hf = config.hf
        self.vocab_size = config.vocab_size
        self.kind = kind_of(hf)
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


def prompt_ids(tok: Any, marker: str) -> list[int]:
    return tok.encode(f"USER: {marker}\nWhat is in it? ASSISTANT:", add_special_tokens=False)


def reference_run(kind: str, ref: Any, ids: list[int], marker_id: int, span: int, extra: dict) -> tuple[torch.Tensor, list[int]]:
    """HF's prompt log-softmax [L, V] (markers expanded to `span` copies) and its greedy tokens."""
    at = ids.index(marker_id)
    full = ids[:at] + [marker_id] * span + ids[at + 1 :]
    input_ids = torch.tensor([full])
    with torch.no_grad():
        logits = ref(input_ids=input_ids, **extra).logits[0]
        gen = ref.generate(input_ids=input_ids, attention_mask=torch.ones_like(input_ids), max_new_tokens=NEW_TOKENS,
                           do_sample=False, pad_token_id=0, **extra)
    return torch.log_softmax(logits.float(), dim=-1), gen[0, len(full):].tolist()


def check_against_reference(out: dict, expected_lp: torch.Tensor, expected_tokens: list[int], image_at: int, span: int) -> None:
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


def generate(engine: Any, ids: list[int], **media: Any) -> dict:
    params = {"temperature": 0, "max_new_tokens": NEW_TOKENS, "ignore_eos": True}
    return engine.generate(input_ids=ids, sampling_params=params, return_logprob=True, logprob_start_len=0,
                           top_logprobs_num=TOP_K, **media)




@contextlib.contextmanager
def items_processor_for(*archs: str) -> Iterator[None]:
    """Serve `archs` with HFItemsProcessor for the duration, then restore the real processors.

    The runtime memoizes processor instances per config object; entries made here are dropped
    on exit so a later engine whose config happens to reuse an id cannot get this test stand-in.
    """
    from sglang.runtime import plugins
    from sglang.runtime.multimodal import processor

    for arch in archs:
        plugins.INPUT_PROCESSORS.register(arch, HFItemsProcessor)
    try:
        yield
    finally:
        for arch in archs:
            plugins.INPUT_PROCESSORS.unregister(arch)
        with processor._lock:
            for key in [k for k, v in processor._instances.items() if isinstance(v, HFItemsProcessor)]:
                del processor._instances[key]
