"""FP8 W8A8 on CUDA (`torch._scaled_mm` on the fp8 tensor cores), bfloat16: each fused Linear
equals the matmul of its e4m3-rounded operands, and the model's logits stay close to the
weight-only path's. Run on the H200; skipped without CUDA or on GPUs without fp8 (< sm_89)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from fp8_writers import write_fp8
from quant_runs import greedy_tokens, logits_with_cached_prefix
from quant_writers import VOCAB, tiny_llama_config
from tiny_models import save_hf_model, save_word_tokenizer

from sglang.runtime.layers.quantization.fp8_gemm import DEQUANT, W8A8, quantize_rows
from sglang.runtime.loading.loader import load_model

pytestmark = pytest.mark.gpu


def _methods(loaded: Any) -> list[Any]:
    return [m.quant_method for m in loaded.model.modules() if getattr(m, "quant_method", None)]


def greedy_tokens_cuda(loaded: Any) -> list[int]:
    return greedy_tokens(loaded, [5, 9, 2, 40, 77, 13], device="cuda")


@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, Path]:
    if torch.cuda.get_device_capability() < (8, 9):
        pytest.skip("this GPU has no fp8 tensor cores (compute capability < 8.9)")
    save_hf_model(tiny_llama_config(), tmp_path / "float")
    save_word_tokenizer(VOCAB, tmp_path / "float")
    return tmp_path / "float", tmp_path


@pytest.mark.parametrize("static", [False, True], ids=["dynamic", "static"])
@torch.no_grad()
def test_w8a8_on_cuda_matches_weight_only(folders: tuple[Path, Path], static: bool) -> None:
    dense, root = folders
    write_fp8(dense, root / "q", root / "d", static=static)
    quant = load_model(str(root / "q"), dtype="bfloat16", device="cuda")
    assert {m.gemm for m in _methods(quant)} == {W8A8}
    layer = quant.model.model.layers[1]
    for name, k in (("self_attn.qkv_proj", 128), ("mlp.gate_up_proj", 128), ("mlp.down_proj", 256)):
        linear = layer.get_submodule(name)
        x = torch.randn(5, k, device="cuda", dtype=torch.bfloat16)
        x8, x_scale = quantize_rows(x, linear.input_scale)
        w = linear.weight_fp8.float() * linear.weight_scale[:, None]
        want = (x8.float() * x_scale) @ w.t()
        torch.testing.assert_close(linear(x).float(), want, atol=2e-2, rtol=1e-2)
    got = logits_with_cached_prefix(quant, device="cuda").float()
    tokens = greedy_tokens_cuda(quant)
    for method in _methods(quant):
        method.gemm = DEQUANT
    want_logits = logits_with_cached_prefix(quant, device="cuda").float()
    # Same bound and reason as test_quant_fp8.W8A8_REL_L2 (activation rounding to e4m3).
    assert float((got - want_logits).norm() / want_logits.norm()) < 0.15
    assert greedy_tokens_cuda(quant) == tokens


@torch.no_grad()
def test_fp8_at_load_picks_w8a8_on_cuda(folders: tuple[Path, Path]) -> None:
    fp8 = load_model(str(folders[0]), dtype="bfloat16", device="cuda", quantization="fp8")
    assert {m.gemm for m in _methods(fp8)} == {W8A8}
    got = logits_with_cached_prefix(fp8, device="cuda").float()
    for method in _methods(fp8):
        method.gemm = DEQUANT
    want = logits_with_cached_prefix(fp8, device="cuda").float()
    assert float((got - want).norm() / want.norm()) < 0.15
