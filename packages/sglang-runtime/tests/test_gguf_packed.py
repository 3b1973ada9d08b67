"""GGUF weights kept packed (quantization="gguf", the CPU default for .gguf files) against
the same file dequantized (dequantize_gguf=True), on a tiny random Llama whose tensors use every
packed format: fused q/k/v and gate/up mixing formats, a fused layer with an F16 shard (dense
fallback), a Q8_0 embedding, tied and untied (Q6_K) LM heads.

Tolerance: both models compute in float32 from the same codes; packed weights are
(q - z) * s where the float path has gguf-py's q * s + offset, so weights differ by fp32
rounding and logits by a small multiple of it: atol 1e-4 on logits of magnitude ~10.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import transformers

from sglang.runtime.loading.loader import LoadedModel, load_model

sys.path.insert(0, str(Path(__file__).parent))
from batch_helpers import ToyKV, make_runner  # noqa: E402
from gguf_writers import write_gguf  # noqa: E402
from tiny_models import save_hf_model  # noqa: E402

ATOL = 1e-4
SHAPE = dict(vocab_size=160, hidden_size=256, intermediate_size=512, num_hidden_layers=2,
             num_attention_heads=4, num_key_value_heads=2, head_dim=64,
             max_position_embeddings=256, bos_token_id=158, eos_token_id=159)
TYPES = {
    "token_embd.weight": "Q8_0", "output.weight": "Q6_K",
    # Layer 0: q/k/v Q4_K + Q6_K + Q5_K -> 8 bits in groups of 16; gate/up 4 + 8 bits.
    "blk.0.attn_q.weight": "Q4_K", "blk.0.attn_k.weight": "Q6_K", "blk.0.attn_v.weight": "Q5_K",
    "blk.0.attn_output.weight": "Q4_0", "blk.0.ffn_gate.weight": "Q4_1",
    "blk.0.ffn_up.weight": "Q8_0", "blk.0.ffn_down.weight": "Q6_K",
    # Layer 1: an F16 v makes q/k/v dense; the rest packed.
    "blk.1.attn_q.weight": "Q8_0", "blk.1.attn_k.weight": "Q8_0", "blk.1.attn_v.weight": "F16",
    "blk.1.attn_output.weight": "Q5_K", "blk.1.ffn_gate.weight": "Q4_K",
    "blk.1.ffn_up.weight": "Q4_K", "blk.1.ffn_down.weight": "Q4_1",
}
PROMPTS = [[158, 5, 9, 2, 40, 77, 13], [158, 5, 9], [60, 61, 62, 63, 64, 65, 66, 67, 68, 3, 9]]


def write_tiny(folder: Path, tied: bool) -> str:
    config = transformers.LlamaConfig(**SHAPE, tie_word_embeddings=tied)
    ref = save_hf_model(config, folder / "hf")
    return write_gguf(ref, "llama", folder / f"tiny-{'tied' if tied else 'untied'}.gguf", TYPES)


@pytest.fixture(scope="module", params=[True, False], ids=["tied", "untied"])
def gguf_path(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    return write_tiny(tmp_path_factory.mktemp("ggufpack"), request.param)


def _logits(loaded: LoadedModel, prompts: list[list[int]]) -> torch.Tensor:
    kv = ToyKV(loaded.config)
    runner = make_runner(loaded.model, kv)
    return runner.forward(kv.extend(list(range(len(prompts))), prompts, all_logits=True))


def test_packed_modules_and_memory(gguf_path: str) -> None:
    packed = load_model(gguf_path, skip_tokenizer=True)
    dense = load_model(gguf_path, skip_tokenizer=True, dequantize_gguf=True)
    layers = packed.model.model.layers
    qkv0 = layers[0].self_attn.qkv_proj
    assert (qkv0.quant_method.bits, qkv0.quant_method.group) == (8, 16)
    assert qkv0.weight is None and qkv0.qweight.dtype == torch.int32
    gate_up0 = layers[0].mlp.gate_up_proj
    assert (gate_up0.quant_method.bits, gate_up0.quant_method.group) == (8, 32)
    assert layers[0].self_attn.o_proj.quant_method.bits == 4
    qkv1 = layers[1].self_attn.qkv_proj  # an F16 shard: the whole fused layer is dense
    assert qkv1.quant_method is None and qkv1.weight.dtype == torch.float32
    embed = packed.model.model.embed_tokens
    assert embed.weight is None and embed.quant_method.bits == 8
    if packed.config.tie_word_embeddings:
        assert packed.model.lm_head is embed
    else:
        assert packed.model.lm_head.quant_method.group == 16  # Q6_K
    assert not any(p.device.type == "meta" for p in packed.model.parameters())
    assert packed.weight_bytes < 0.45 * dense.weight_bytes


def test_packed_logits_match_dequantized(gguf_path: str) -> None:
    packed = load_model(gguf_path, skip_tokenizer=True)
    dense = load_model(gguf_path, skip_tokenizer=True, dequantize_gguf=True)
    want = _logits(dense, PROMPTS)
    assert want.abs().max() > 1.0  # not flat: a wrong weight would show
    torch.testing.assert_close(_logits(packed, PROMPTS), want, atol=ATOL, rtol=0)


def test_packed_embedding_rows(gguf_path: str) -> None:
    packed = load_model(gguf_path, skip_tokenizer=True)
    dense = load_model(gguf_path, skip_tokenizer=True, dequantize_gguf=True)
    ids = torch.tensor([[0, 158, 7], [159, 7, 3]])
    got = packed.model.model.embed_tokens(ids)
    want = dense.model.model.embed_tokens(ids)
    assert got.shape == (2, 3, 256)
    torch.testing.assert_close(got, want, atol=1e-6, rtol=0)


def _engine_greedy(path: str, **kwargs: Any) -> tuple[list[list[int]], list[int]]:
    import sglang as sgl

    shared = [158, *range(20, 40)]
    params = {"temperature": 0, "max_new_tokens": 6, "ignore_eos": True}
    with sgl.Engine(model_path=path, device="cpu", debug_check_integrity=True,
                    **kwargs) as engine:
        out = engine.generate(input_ids=PROMPTS, sampling_params=params)
        out += engine.generate(input_ids=[shared + [5, 6], shared + [7]], sampling_params=params)
        out += engine.generate(input_ids=[shared + [8, 9, 10]], sampling_params=params)
        engine.check_integrity()
    return [o["output_ids"] for o in out], [o["meta_info"]["cached_tokens"] for o in out]


def test_engine_packed_equals_dequantized_with_cached_prefix(tmp_path: Path) -> None:
    """A ragged batch, then prompts over a radix-cached prefix, integrity checked after every
    step: packed and dequantized weights generate the same greedy tokens."""
    path = write_tiny(tmp_path, tied=True)
    want, _ = _engine_greedy(path, dequantize_gguf=True)
    got, cached = _engine_greedy(path)
    assert cached[-1] >= 21
    assert got == want


def test_flag_conflicts_are_clear_errors(gguf_path: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="dequantize_gguf=True asks for float ones"):
        load_model(gguf_path, skip_tokenizer=True, quantization="gguf", dequantize_gguf=True)
    config = transformers.LlamaConfig(**SHAPE)
    save_hf_model(config, tmp_path / "hf")
    with pytest.raises(ValueError, match="not a .gguf file"):
        load_model(str(tmp_path / "hf"), skip_tokenizer=True, quantization="gguf")
