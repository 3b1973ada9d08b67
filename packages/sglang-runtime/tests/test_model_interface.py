"""The model interface without an engine: the typed model config, the KV-cache spec the builder
sizes the pool from, placeholder ids, media loading, multimodal items over msgpack, and the
encoder cache."""

from __future__ import annotations

import base64
import dataclasses
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest
import torch
import transformers

from sglang.protocol.sampling_params import SamplingParams
from sglang.runtime.executor.encoder_cache import EncoderCache
from sglang.runtime.messages import MultimodalItem, SchedulerInput, TokenizedGenerateReq
from sglang.runtime.models.base import CausalLM, item_features
from sglang.runtime.models.config import ModelConfig
from sglang.runtime.models.llama import LlamaForCausalLM
from sglang.runtime.multimodal.items import (
    check_items,
    content_hash,
    overlapping,
    placeholder_ids,
)
from sglang.runtime.multimodal.media import load_media_bytes
from sglang.runtime.multimodal.processor import input_processor_for

# pytest runs in importlib mode: make the sibling helper modules importable.
sys.path.insert(0, str(Path(__file__).parent))

SHAPE = dict(
    vocab_size=96, hidden_size=64, intermediate_size=128, num_hidden_layers=3,
    num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=300,
)


def test_model_config_reads_the_language_model_sizes() -> None:
    cfg = ModelConfig.from_hf(transformers.LlamaConfig(**SHAPE, eos_token_id=[5, 7]))
    assert (cfg.vocab_size, cfg.num_layers, cfg.num_heads, cfg.num_kv_heads) == (96, 3, 4, 2)
    assert (cfg.head_dim, cfg.context_len, cfg.eos_token_ids) == (16, 300, (5, 7))
    assert cfg.architectures == ()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.vocab_size = 1  # type: ignore[misc]


def test_model_config_reads_a_nested_text_config() -> None:
    vl = transformers.LlavaConfig(text_config=transformers.LlamaConfig(**SHAPE, head_dim=32))
    vl.architectures = ["LlavaForConditionalGeneration"]
    cfg = ModelConfig.from_hf(vl)
    assert cfg.architectures == ("LlavaForConditionalGeneration",)
    assert (cfg.vocab_size, cfg.hidden_size, cfg.head_dim, cfg.context_len) == (96, 64, 32, 300)
    assert cfg.text_hf is vl.text_config and cfg.hf is vl


def test_qwen2_window_is_off_unless_used() -> None:
    off = ModelConfig.from_hf(transformers.Qwen2Config(**SHAPE, sliding_window=8))
    on = ModelConfig.from_hf(transformers.MistralConfig(**SHAPE, sliding_window=8))
    assert (off.sliding_window, on.sliding_window) == (None, 8)


def test_kv_cache_spec_is_the_models_geometry() -> None:
    model = LlamaForCausalLM(transformers.MistralConfig(**SHAPE, sliding_window=8), torch.float16)
    assert isinstance(model, CausalLM)
    spec = model.kv_cache_spec()
    assert (spec.num_layers, spec.num_kv_heads, spec.head_dim) == (3, 2, 16)
    assert (spec.dtype, spec.sliding_window) == (torch.float16, 8)


def test_placeholder_ids_follow_the_content_hash() -> None:
    a = content_hash("image", b"\x00" * 12, "float32", (3,))
    b = content_hash("image", b"\x01" * 12, "float32", (3,))
    assert a == content_hash("image", b"\x00" * 12, "float32", (3,))
    assert a != content_hash("video", b"\x00" * 12, "float32", (3,))
    ids_a, ids_b = placeholder_ids(a, 5, 96), placeholder_ids(b, 5, 96)
    assert ids_a == placeholder_ids(a, 5, 96) and len(ids_a) == 5
    assert min(ids_a + ids_b) >= 96 and ids_a[0] != ids_b[0]
    assert max(ids_a + ids_b) < 2**62  # fits int64 with room


def _item(offset: int, length: int, digest: str = "ab" * 32) -> MultimodalItem:
    feats = torch.arange(length * 2, dtype=torch.float32).reshape(length, 2)
    return MultimodalItem(
        modality="image", content_hash=digest, offset=offset, length=length,
        features=feats.numpy().tobytes(), dtype="float32", shape=[length, 2],
    )


def test_items_cross_a_process_through_msgpack() -> None:
    item = _item(2, 3)
    msg = TokenizedGenerateReq(
        rid="r", input_ids=[1, 2] + placeholder_ids(item.content_hash, 3, 96),
        sampling_params=SamplingParams(), mm_items=[item],
    )
    back = msgspec.msgpack.Decoder(SchedulerInput).decode(msgspec.msgpack.encode(msg))
    assert back == msg
    assert torch.equal(item_features(back.mm_items[0], "cpu"), torch.arange(6.0).reshape(3, 2))
    check_items(back.input_ids, back.mm_items, 96)
    with pytest.raises(ValueError, match="placeholder ids"):
        check_items([1, 2, 3, 4, 5], [item], 96)


def test_overlap_of_items_with_an_extend_chunk() -> None:
    items = [_item(3, 16), _item(25, 4)]
    assert [(i.offset, a, b) for i, a, b in overlapping(items, 0, 8)] == [(3, 0, 5)]
    assert [(i.offset, a, b) for i, a, b in overlapping(items, 8, 16)] == [(3, 5, 13)]
    assert [(i.offset, a, b) for i, a, b in overlapping(items, 16, 27)] == [(3, 13, 16), (25, 0, 2)]
    assert overlapping(items, 19, 25) == []


def test_media_references(tmp_path) -> None:
    data = b"\x89PNG fake"
    path = tmp_path / "x.bin"
    path.write_bytes(data)
    b64 = base64.b64encode(data).decode()
    for ref in (data, str(path), b64, f"data:image/png;base64,{b64}"):
        assert load_media_bytes(ref) == data
    for ref, message in [
        ("missing.png", "does not exist"),
        ("data:image/png,abc", "must be base64"),
        ("!!notbase64!!", "not valid base64"),
        ("http://cat.invalid/y.png", "does not resolve"),
        ("file:///etc/hosts", "unsupported URL scheme"),
        (str(tmp_path), "is a directory"),
        (b"", "is empty"),
    ]:
        with pytest.raises(ValueError, match=message):
            load_media_bytes(ref)


def test_text_only_model_refuses_media() -> None:
    cfg = ModelConfig.from_hf(transformers.LlamaConfig(**SHAPE, architectures=["LlamaForCausalLM"]))
    with pytest.raises(ValueError, match="does not take images"):
        input_processor_for(cfg)


def test_encoder_cache_is_lru_under_a_byte_budget() -> None:
    cache = EncoderCache(budget_bytes=3 * 64)
    calls: list[str] = []

    def enc(key: str) -> torch.Tensor:
        return cache.get_or_encode(key, lambda: calls.append(key) or torch.zeros(16))

    for key in ("a", "b", "c", "a", "d", "b"):
        enc(key)
    # "b" was the least recently used when "d" came in; "a" had been touched again.
    assert calls == ["a", "b", "c", "d", "b"]
    assert cache.used_bytes <= cache.budget_bytes
    big = EncoderCache(budget_bytes=8)
    big.get_or_encode("x", lambda: torch.zeros(16))
    assert "x" not in big and big.used_bytes == 0


def test_front_door_modules_are_torch_free() -> None:
    code = (
        "import sys; import sglang.runtime.multimodal.processor, sglang.runtime.multimodal.media;"
        "import sglang.runtime.models.config; assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_model_config_from_a_folder(tmp_path) -> None:
    transformers.LlamaConfig(**SHAPE, architectures=["LlamaForCausalLM"]).save_pretrained(tmp_path)
    cfg = ModelConfig.from_pretrained(str(tmp_path))
    assert (cfg.vocab_size, cfg.architectures) == (96, ("LlamaForCausalLM",))


def test_text_only_model_in_the_engine_refuses_image_data(tmp_path) -> None:
    from tiny_models import save_tiny_model

    import sglang as sgl

    config = transformers.LlamaConfig(**SHAPE, architectures=["LlamaForCausalLM"])
    engine = sgl.Engine(model_path=save_tiny_model(config, tmp_path), device="cpu",
                        max_total_tokens=512)
    try:
        with pytest.raises(ValueError, match="does not take images"):
            engine.generate("t1 t2", {"max_new_tokens": 2}, image_data="x.png")
        # Media-free requests are untouched by the hook.
        assert len(engine.generate("t1 t2", {"max_new_tokens": 2})["output_ids"]) == 2
    finally:
        engine.shutdown()
