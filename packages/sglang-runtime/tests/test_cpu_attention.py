"""The cpu attention backend (C kernels) against the torch backend it falls back to: same
outputs within fp32 rounding, the same K/V written to the pool, and the torch path wherever the
kernels do not apply."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from sglang.runtime.attention import cpu_backend
from sglang.runtime.attention.cpu_backend import CpuAttentionBackend
from sglang.runtime.attention.torch_backend import TorchAttentionBackend
from sglang.runtime.cache.kv_pool import KVPool
from sglang.runtime.executor.forward_context import ForwardBatch, ForwardMode
from sglang.runtime.layers.rotary import RotaryEmbedding

sys.path.insert(0, str(Path(__file__).parent))

HEADS, KV_HEADS, HEAD_DIM = 6, 2, 32


def make_batch(shared: int, cached: list[int], new: list[int], pool: KVPool) -> ForwardBatch:
    """Requests sharing the slots of their first `shared` positions, then `cached[i]` slots of
    their own, computing `new[i]` tokens (a DECODE batch when every request computes one)."""
    seq = [shared + c + e for c, e in zip(cached, new)]
    table = torch.zeros(len(new), max(seq) + 1, dtype=torch.int64)
    nxt = shared
    for i, total in enumerate(seq):
        table[i, :shared] = torch.arange(shared)
        table[i, shared:total] = torch.arange(nxt, nxt + total - shared)
        nxt += total - shared
    prefix = [shared + c for c in cached]
    positions = torch.cat([torch.arange(p, p + e) for p, e in zip(prefix, new)])
    loc = torch.cat([table[i, p:p + e] for i, (p, e) in enumerate(zip(prefix, new))])
    return ForwardBatch(
        mode=ForwardMode.DECODE if all(e == 1 for e in new) else ForwardMode.EXTEND,
        input_ids=torch.zeros(len(positions), dtype=torch.int64), positions=positions,
        out_cache_loc=loc, req_pool_indices=torch.arange(len(new)), seq_lens=torch.tensor(seq),
        prefix_lens=torch.tensor(prefix), extend_lens=torch.tensor(new), req_to_token=table,
        kv_pool=pool, seq_lens_cpu=seq, prefix_lens_cpu=prefix, extend_lens_cpu=list(new),
    )


def filled_pool(slots: int, dtype: torch.dtype = torch.float32) -> KVPool:
    pool = KVPool(slots, 2, KV_HEADS, HEAD_DIM, dtype, "cpu")
    g = torch.Generator().manual_seed(0)
    for buf in (*pool.k, *pool.v):
        buf[:slots] = torch.randn(slots, KV_HEADS, HEAD_DIM, generator=g).to(dtype)
    return pool


def run_both(shared, cached, new, *, sliding_window=None, logit_cap=0.0, layer_window=None,
             dtype=torch.float32):
    """(cpu output, torch output, cpu pool, torch pool, the cpu batch) for one layer."""
    slots = shared + sum(cached) + sum(new) + 1
    rotary = RotaryEmbedding(HEAD_DIM, 2048, {"rope_theta": 10000.0, "rope_type": "default"})
    g = torch.Generator().manual_seed(1)
    tokens = sum(new)
    q = torch.randn(tokens, HEADS, HEAD_DIM, generator=g).to(dtype)
    k = torch.randn(tokens, KV_HEADS, HEAD_DIM, generator=g).to(dtype)
    v = torch.randn(tokens, KV_HEADS, HEAD_DIM, generator=g).to(dtype)
    results = []
    for backend in (CpuAttentionBackend(sliding_window=sliding_window),
                    TorchAttentionBackend(sliding_window=sliding_window)):
        pool = filled_pool(slots, dtype)
        batch = make_batch(shared, cached, new, pool)
        backend.prepare(batch)
        out = backend.forward_with_rope(q.clone(), k.clone(), v.clone(), batch.positions, rotary,
                                        1, HEAD_DIM**-0.5, batch, sliding_window=layer_window,
                                        logit_cap=logit_cap)
        results.append((out, pool, batch))
    (cpu_out, cpu_pool, cpu_batch), (torch_out, torch_pool, _) = results
    return cpu_out, torch_out, cpu_pool, torch_pool, cpu_batch


def assert_same(cpu_out, torch_out, cpu_pool, torch_pool):
    torch.testing.assert_close(cpu_out, torch_out, atol=2e-5, rtol=1e-5)
    # The rotary is bit for bit the torch one, so the pools hold identical K and V.
    for a, b in zip((*cpu_pool.k, *cpu_pool.v), (*torch_pool.k, *torch_pool.v)):
        assert torch.equal(a, b)


@pytest.mark.parametrize("shared, cached, new", [
    (0, [3, 40, 17, 1], [1, 1, 1, 1]),  # decode
    (100, [1, 5, 30], [1, 1, 1]),  # decode under a shared prefix (the torch cascade)
    (0, [0, 0], [5, 33]),  # prefill
    (70, [0, 4, 9], [14, 3, 1]),  # extend after cached prefixes
])
def test_kernel_path_matches_torch(shared, cached, new):
    cpu_out, torch_out, cpu_pool, torch_pool, batch = run_both(shared, cached, new)
    assert isinstance(batch.attn_metadata, cpu_backend._KernelMetadata)
    assert_same(cpu_out, torch_out, cpu_pool, torch_pool)


@pytest.mark.parametrize("model_window, layer_window, cap", [
    (16, None, 0.0), (None, 7, 0.0), (None, None, 30.0), (40, 9, 10.0),
])
def test_windows_and_soft_cap(model_window, layer_window, cap):
    out = run_both(20, [5, 50], [1, 1], sliding_window=model_window, layer_window=layer_window,
                   logit_cap=cap)
    assert_same(*out[:4])
    out = run_both(0, [30, 2], [9, 20], sliding_window=model_window, layer_window=layer_window,
                   logit_cap=cap)
    assert_same(*out[:4])


def test_long_extends_take_the_torch_path():
    n = cpu_backend.MAX_KERNEL_EXTEND + 1
    cpu_out, torch_out, cpu_pool, torch_pool, batch = run_both(0, [0, 3], [n, 2])
    assert not isinstance(batch.attn_metadata, cpu_backend._KernelMetadata)
    assert_same(cpu_out, torch_out, cpu_pool, torch_pool)


def test_other_pool_dtypes_take_the_torch_path():
    cpu_out, torch_out, _, _, batch = run_both(0, [4, 9], [1, 1], dtype=torch.bfloat16)
    assert not isinstance(batch.attn_metadata, cpu_backend._KernelMetadata)
    assert torch.equal(cpu_out, torch_out)


def test_unsupported_head_geometry_falls_back_inside_the_layer(monkeypatch):
    # The batch was prepared for the kernels, but the kernel declines this layer's heads: the
    # layer still attends (the torch path over the pool the rotary kernel already wrote).
    monkeypatch.setattr(cpu_backend.kernels, "paged_attention_cpu", lambda *a, **k: None)
    cpu_out, torch_out, cpu_pool, torch_pool, batch = run_both(30, [2, 7], [1, 1])
    assert isinstance(batch.attn_metadata, cpu_backend._KernelMetadata)
    assert_same(cpu_out, torch_out, cpu_pool, torch_pool)


# ---- through the model and the engine -------------------------------------------------------
SHAPE = dict(vocab_size=128, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
             num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256)


@pytest.fixture(scope="module", params=["llama", "mistral_window6"])
def model_dir(request, tmp_path_factory) -> str:
    import transformers
    from tiny_models import save_tiny_model

    config = (transformers.LlamaConfig(**SHAPE) if request.param == "llama"
              else transformers.MistralConfig(**SHAPE, sliding_window=6))
    return save_tiny_model(config, tmp_path_factory.mktemp(request.param))


def _ids(seed: int, lens: list[int]) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(0, SHAPE["vocab_size"], (n,), generator=g).tolist() for n in lens]


def test_model_logits_equal_torch_backend(model_dir):
    """Prefill, extend over cached prompts, decode: the same fp32 logits from both backends."""
    from batch_helpers import ToyKV

    from sglang.runtime.attention.base import create_backend
    from sglang.runtime.executor.model_runner import ModelRunner
    from sglang.runtime.loading.loader import load_model

    loaded = load_model(model_dir, dtype="float32", device=torch.device("cpu"))
    window = getattr(loaded.model, "sliding_window", None)
    runs = {}
    for name in ("torch", "cpu"):
        kv = ToyKV(loaded.config, max_reqs=4, max_context=64)
        runner = ModelRunner(loaded.model, kv.pool, create_backend(name, sliding_window=window))
        logits = [runner.forward(kv.extend([2, 0, 3], _ids(1, [5, 19, 2]), all_logits=True))]
        logits.append(runner.forward(kv.extend([0, 1, 2], _ids(2, [4, 9, 1]), all_logits=True)))
        for step in range(3):
            logits.append(runner.forward(kv.decode([3, 0, 1, 2], [7 + step, 1, 2, 3])))
        runs[name] = logits
    for want, got in zip(runs["torch"], runs["cpu"], strict=True):
        assert want.abs().max() > 1.0  # the comparison is not trivially close
        torch.testing.assert_close(got, want, atol=1e-4, rtol=0)


def test_engine_greedy_equals_torch_backend_with_integrity_checks(model_dir):
    import sglang as sgl

    shared, tails = _ids(5, [70])[0], _ids(6, [1, 4, 2])
    prompts = _ids(7, [3, 12]) + [shared + t for t in tails]
    params = {"temperature": 0, "max_new_tokens": 8, "ignore_eos": True}
    runs = {}
    for backend in ("torch", "auto"):
        with sgl.Engine(model_path=model_dir, device="cpu", dtype="float32",
                        attention_backend=backend, debug_check_integrity=True) as engine:
            if backend == "auto":
                assert isinstance(engine.runtime.scheduler.runner.attn_backend,
                                  CpuAttentionBackend)
            out = engine.generate(input_ids=prompts[:3], sampling_params=params)
            out += engine.generate(input_ids=prompts[3:], sampling_params=params)
            engine.check_integrity()
        runs[backend] = ([o["output_ids"] for o in out],
                         [o["meta_info"]["cached_tokens"] for o in out])
    assert runs["auto"][1][3:] == [70, 70]  # the second batch decoded under a cached prefix
    assert runs["auto"] == runs["torch"]
