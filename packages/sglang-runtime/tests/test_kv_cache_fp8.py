"""FP8 KV cache (--kv-cache-dtype fp8_e4m3 / fp8_e5m2) on CPU.

The pool stores saturate(x / scale) in one byte per element; the torch backend dequantizes the
gathered rows, the Triton backend (in Triton's interpreter here) stores and reads the same codes
in its kernels. Checked: flag validation, quantize/dequantize in the pool, both backends giving
the same logits over an fp8 pool, logits within the e4m3 tolerance of the unquantized pool
(tiny random Llama and the embedded SmolLM2), checkpoint scales, pool sizing, and the Engine.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
import transformers

from sglang.runtime.cache.kv_pool import KVPool
from sglang.runtime.cache.kv_quant import resolve_kv_dtype
from sglang.runtime.config import RuntimeArgs
from sglang.runtime.loading.loader import load_model

sys.path.insert(0, str(Path(__file__).parent))
from kv_fp8_cases import assert_fp8_close, random_ids, run_logits  # noqa: E402
from tiny_models import save_tiny_model  # noqa: E402

VOCAB = 128
SHAPE = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
             num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    return save_tiny_model(transformers.LlamaConfig(**SHAPE), tmp_path_factory.mktemp("kvfp8"))


def test_unknown_kv_cache_dtype_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="kv_cache_dtype.*fp8_e4m3"):
        RuntimeArgs(kv_cache_dtype="int4")
    with pytest.raises(ValueError, match="unknown kv_cache_dtype 'fp8'.*fp8_e5m2"):
        resolve_kv_dtype("fp8", torch.float32)
    assert resolve_kv_dtype("auto", torch.bfloat16) == torch.bfloat16
    assert resolve_kv_dtype("fp8_e4m3", torch.bfloat16) == torch.float8_e4m3fn


def test_pool_quantizes_on_store_with_the_layer_scale() -> None:
    pool = KVPool(8, 2, 1, 4, torch.float8_e4m3fn, "cpu", [0.5, 2.0], [0.25, 4.0])
    k = torch.tensor([[[1.0, -3.0, 1000.0, 0.3]]])
    loc = torch.tensor([3])
    pool.set_kv(1, loc, k, k * 2)
    assert pool.scales(1) == (2.0, 4.0)
    k_buf, v_buf = pool.get_kv(1)
    assert k_buf.dtype == torch.float8_e4m3fn
    # 1000 / 2 = 500 saturates at 448; the others round to 3 mantissa bits.
    torch.testing.assert_close(k_buf[3].float() * 2.0, torch.tensor([[1.0, -3.0, 896.0, 0.3125]]))
    torch.testing.assert_close(v_buf[3].float() * 4.0, torch.tensor([[2.0, -6.0, 1792.0, 0.625]]))
    plain = KVPool(8, 2, 1, 4, torch.float32, "cpu", [0.5, 2.0], [0.25, 4.0])
    assert plain.scales(1) == (1.0, 1.0)  # an unquantized pool ignores scales


@pytest.mark.parametrize("fp8", [torch.float8_e4m3fn, torch.float8_e5m2], ids=["e4m3", "e5m2"])
def test_triton_and_torch_backends_agree_on_an_fp8_pool(tiny_dir: str, fp8: torch.dtype) -> None:
    """Both dequantize the same codes with the same scales: only float32 arithmetic differs."""
    loaded = load_model(tiny_dir, dtype="float32")
    scales = (0.03, 0.02)
    want = run_logits(loaded.model, loaded.config, fp8, "torch", VOCAB, scales)
    got = run_logits(loaded.model, loaded.config, fp8, "triton", VOCAB, scales)
    torch.testing.assert_close(got, want, atol=1e-4, rtol=0)


@pytest.mark.parametrize("scales", [(1.0, 1.0), (0.03, 0.02)], ids=["unit", "scaled"])
def test_tiny_model_fp8_logits_close_to_unquantized(tiny_dir: str, scales) -> None:
    loaded = load_model(tiny_dir, dtype="float32")
    want = run_logits(loaded.model, loaded.config, None, "torch", VOCAB)
    got = run_logits(loaded.model, loaded.config, torch.float8_e4m3fn, "torch", VOCAB, scales)
    assert_fp8_close(got, want)
    assert not torch.equal(got, want)  # the pool really was quantized


def test_reading_with_the_wrong_scales_fails_the_tolerance(tiny_dir: str, monkeypatch) -> None:
    """The check can fail: codes stored with scales 0.03/0.02 but read back with 1.0."""
    loaded = load_model(tiny_dir, dtype="float32")
    want = run_logits(loaded.model, loaded.config, None, "torch", VOCAB)
    monkeypatch.setattr(KVPool, "scales", lambda self, layer_id: (1.0, 1.0))
    got = run_logits(loaded.model, loaded.config, torch.float8_e4m3fn, "torch", VOCAB,
                     (0.03, 0.02))
    with pytest.raises(AssertionError):
        assert_fp8_close(got, want)


def test_checkpoint_kv_scales_are_read(tiny_dir: str, tmp_path: Path) -> None:
    """k_scale / v_scale (and a shared kv_scale) tensors of the attention modules become the
    pool's per-layer scales; layers without any keep 1.0."""
    import shutil

    from safetensors.torch import load_file, save_file

    folder = tmp_path / "scaled"
    shutil.copytree(tiny_dir, folder)
    weights = load_file(folder / "model.safetensors")
    weights["model.layers.0.self_attn.k_scale"] = torch.tensor(0.25)
    weights["model.layers.0.self_attn.v_scale"] = torch.tensor([0.5])
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    loaded = load_model(str(folder), dtype="float32")
    assert loaded.kv_scales.per_layer(2) == ([0.25, 1.0], [0.5, 1.0])
    weights.pop("model.layers.0.self_attn.k_scale")
    weights.pop("model.layers.0.self_attn.v_scale")
    weights["model.layers.1.self_attn.kv_scale"] = torch.tensor(0.125)
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    loaded = load_model(str(folder), dtype="float32")
    assert loaded.kv_scales.per_layer(2) == ([1.0, 0.125], [1.0, 0.125])


def test_fixed_memory_holds_twice_the_tokens(tiny_dir: str, monkeypatch) -> None:
    """max_total_tokens from one memory budget: fp8 doubles bf16's and quadruples fp32's."""
    import sglang.runtime.builder as builder

    pages = {"SC_AVPHYS_PAGES": 1 << 18, "SC_PAGE_SIZE": 4096}  # 1 GiB "free"
    monkeypatch.setattr(builder.os, "sysconf", lambda name: pages[name])
    slots = {}
    for dtype, kv in (("float32", "auto"), ("bfloat16", "auto"), ("float32", "fp8_e4m3"),
                      ("bfloat16", "fp8_e5m2")):
        rt = builder.build_runtime(RuntimeArgs(model_path=tiny_dir, dtype=dtype, device="cpu",
                                               kv_cache_dtype=kv))
        pool = rt.scheduler.kv.kv_pool
        slots[dtype, kv] = pool.num_slots
        assert pool.k[0].dtype == resolve_kv_dtype(kv, getattr(torch, dtype))
        assert pool.k[0].element_size() * pool.k[0][0].numel() * 2 * pool.num_layers == (
            KVPool.bytes_per_slot(pool.num_layers, pool.num_kv_heads, pool.head_dim,
                                  pool.dtype))
    bf16 = slots["bfloat16", "auto"]
    assert slots["float32", "fp8_e4m3"] == slots["bfloat16", "fp8_e5m2"]
    assert slots["float32", "fp8_e4m3"] == pytest.approx(2 * bf16, abs=1)
    assert slots["float32", "fp8_e4m3"] == pytest.approx(4 * slots["float32", "auto"], abs=3)


def _engine_greedy(model_dir: str, kv: str, backend: str) -> tuple[list[list[int]], list[int]]:
    import sglang as sgl

    shared, tails = random_ids(5, [21], VOCAB)[0], random_ids(6, [1, 4, 2], VOCAB)
    prompts = random_ids(7, [3, 12], VOCAB)
    prompts += [shared + t for t in tails]
    params = {"temperature": 0, "max_new_tokens": 4, "ignore_eos": True}
    with sgl.Engine(model_path=model_dir, device="cpu", dtype="float32", kv_cache_dtype=kv,
                    attention_backend=backend, debug_check_integrity=True) as engine:
        out = engine.generate(input_ids=prompts[:3], sampling_params=params)
        out += engine.generate(input_ids=prompts[3:], sampling_params=params)
        engine.check_integrity()
    return [o["output_ids"] for o in out], [o["meta_info"]["cached_tokens"] for o in out]


def test_engine_fp8_triton_equals_torch_with_cached_prefix(tiny_dir: str) -> None:
    """A ragged batch, then a batch over a radix-cached prefix, integrity checked after every
    step: the two backends generate the same tokens from the same fp8 cache."""
    want, _ = _engine_greedy(tiny_dir, "fp8_e4m3", "torch")
    got, cached = _engine_greedy(tiny_dir, "fp8_e4m3", "triton")
    assert cached[3:] == [21, 21]
    assert got == want


def test_e4m3_on_a_gpu_without_fp8_conversions_is_refused(monkeypatch) -> None:
    from sglang.runtime.cache.kv_quant import check_kv_support

    cuda = torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (8, 0))
    with pytest.raises(ValueError, match="capability >= 8.9.*8.0.*fp8_e5m2"):
        check_kv_support(torch.float8_e4m3fn, "triton", cuda)
    check_kv_support(torch.float8_e5m2, "triton", cuda)  # e5m2 converts on any GPU
    check_kv_support(torch.float8_e4m3fn, "torch", cuda)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))
    check_kv_support(torch.float8_e4m3fn, "triton", cuda)  # Hopper
