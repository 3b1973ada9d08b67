"""Our CLIP tower against transformers' CLIPVisionModel on identical random weights."""

from __future__ import annotations

import pytest
import torch

from sglang.multimodal.encoders.clip import ClipVisionTower


def _reference(hidden_act: str = "quick_gelu") -> torch.nn.Module:
    from transformers import CLIPVisionConfig, CLIPVisionModel

    torch.manual_seed(0)
    config = CLIPVisionConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4,
        image_size=56, patch_size=14, hidden_act=hidden_act,
    )
    model = CLIPVisionModel(config).eval()
    with torch.no_grad():  # the default init leaves LayerNorms at 1/0: perturb them to be tested
        for name, param in model.named_parameters():
            if "norm" in name:
                param.add_(0.1 * torch.randn_like(param))
    return model


def _ours(ref: torch.nn.Module, feature_layer: int | list[int], strategy: str) -> ClipVisionTower:
    tower = ClipVisionTower(ref.config, feature_layer, strategy)
    tower.load_weights(ref.state_dict().items())
    return tower.eval()


@pytest.mark.parametrize("hidden_act", ["quick_gelu", "gelu"])
def test_every_hidden_state_matches(hidden_act: str) -> None:
    ref = _reference(hidden_act)
    pixels = torch.randn(3, 3, 56, 56)
    with torch.no_grad():
        expected = ref(pixel_values=pixels, output_hidden_states=True).hidden_states
        ours = _ours(ref, -1, "full").vision_model.hidden_states(pixels)
    assert len(ours) == len(expected) == 4
    for got, want in zip(ours, expected, strict=True):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("feature_layer,strategy", [(-2, "default"), (-1, "full"), ([-3, -1], "default"), (1, "full")])
def test_feature_selection(feature_layer: int | list[int], strategy: str) -> None:
    ref = _reference()
    pixels = torch.randn(2, 3, 56, 56)
    with torch.no_grad():
        states = ref(pixel_values=pixels, output_hidden_states=True).hidden_states
        layers = [feature_layer] if isinstance(feature_layer, int) else feature_layer
        want = torch.cat([states[i] for i in layers], dim=-1)
        want = want[:, 1:] if strategy == "default" else want
        got = _ours(ref, feature_layer, strategy)(pixels)
    assert got.shape == (2, 16 + (strategy == "full"), 32 * len(layers))
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_batched_equals_one_by_one_and_rejects_wrong_size() -> None:
    tower = _ours(_reference(), -2, "default")
    pixels = torch.randn(4, 3, 56, 56)
    with torch.no_grad():
        batched = tower(pixels)
        single = torch.cat([tower(pixels[i : i + 1]) for i in range(4)])
        torch.testing.assert_close(batched, single, atol=1e-5, rtol=1e-5)
        with pytest.raises(ValueError, match="56x56"):
            tower(torch.randn(1, 3, 28, 28))


def test_missing_weight_fails_loudly() -> None:
    ref = _reference()
    tower = ClipVisionTower(ref.config)
    partial = [(k, v) for k, v in ref.state_dict().items() if "layers.1.self_attn.k_proj" not in k]
    with pytest.raises(ValueError, match="lacks"):
        tower.load_weights(partial)
