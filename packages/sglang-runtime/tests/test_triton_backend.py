"""The Triton attention backend against the torch backend on a tiny random-weight model.

On CPU the kernels run in Triton's interpreter (the root conftest sets TRITON_INTERPRET=1). In
float32 both backends must give the same logits (ragged prefill, extend over a cached prefix,
decode, sliding window) and an Engine the same greedy tokens, radix-cache hits included.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import transformers

from sglang.runtime.attention.base import create_backend, resolve_backend_name
from sglang.runtime.attention.triton_backend import TritonAttentionBackend
from sglang.runtime.executor.model_runner import ModelRunner
from sglang.runtime.loading.loader import load_model

sys.path.insert(0, str(Path(__file__).parent))
from batch_helpers import ToyKV  # noqa: E402
from tiny_models import save_tiny_model  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
VOCAB = 128
ATOL = 1e-4
SHAPE = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
             num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256)
CONFIGS = {
    "llama": lambda: transformers.LlamaConfig(**SHAPE),
    "mistral_window6": lambda: transformers.MistralConfig(**SHAPE, sliding_window=6),
}


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def model_dir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    return save_tiny_model(CONFIGS[request.param](), tmp_path_factory.mktemp(request.param))


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    return save_tiny_model(CONFIGS["llama"](), tmp_path_factory.mktemp("llama_engine"))


def _ids(seed: int, lens: list[int]) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(0, VOCAB, (n,), generator=g).tolist() for n in lens]


def test_auto_is_triton_on_cuda_cpu_on_the_cpu_and_torch_elsewhere() -> None:
    assert resolve_backend_name("auto", torch.device("cuda")) == "triton"
    assert resolve_backend_name("auto", torch.device("cpu")) == "cpu"
    assert resolve_backend_name("auto", torch.device("meta")) == "torch"
    assert resolve_backend_name("torch", torch.device("cuda")) == "torch"
    assert isinstance(create_backend("triton"), TritonAttentionBackend)


def test_logits_equal_torch_backend(model_dir: str) -> None:
    """Prefill, then extend over the cached prefix (one request new), then decode: the same
    fp32 logits for every token from both backends, and from the Triton backend whose decode
    attention rotates and stores the current token itself."""
    loaded = load_model(model_dir, dtype="float32", device=torch.device(DEVICE))
    window = getattr(loaded.model, "sliding_window", None)
    runs = {}
    for run, (name, fuse) in {"torch": ("torch", False), "triton": ("triton", False),
                              "fused": ("triton", True)}.items():
        kv = ToyKV(loaded.config, max_reqs=4, max_context=64, device=DEVICE)
        backend = create_backend(name, sliding_window=window, fuse_decode_rope=fuse)
        runner = ModelRunner(loaded.model, kv.pool, backend)
        logits = [runner.forward(kv.extend([2, 0, 3], _ids(1, [5, 19, 2]), all_logits=True))]
        # Row 1 joins with nothing cached; the others extend past their cached prompt.
        logits.append(runner.forward(kv.extend([0, 1, 2], _ids(2, [4, 9, 1]), all_logits=True)))
        for step in range(3):
            logits.append(runner.forward(kv.decode([3, 0, 1, 2], [7 + step, 1, 2, 3])))
        runs[run] = logits
    for want, got, fused in zip(runs["torch"], runs["triton"], runs["fused"], strict=True):
        assert want.abs().max() > 1.0  # the comparison is not trivially close
        torch.testing.assert_close(got, want, atol=ATOL, rtol=0)
        torch.testing.assert_close(fused, got, atol=ATOL, rtol=0)


def test_decode_prepare_is_free_of_host_reads(model_dir: str, monkeypatch) -> None:
    """Decode metadata comes from shapes and device tensors only (the CUDA-graph batch has no
    CPU copies of the lengths), and the workspace is reused, not reallocated, across steps."""
    loaded = load_model(model_dir, dtype="float32", device=torch.device(DEVICE))
    kv = ToyKV(loaded.config, max_reqs=4, max_context=64, device=DEVICE)
    backend = TritonAttentionBackend()
    runner = ModelRunner(loaded.model, kv.pool, backend)
    runner.forward(kv.extend([0, 1], _ids(3, [6, 3])))
    workspaces = []
    for step in range(2):
        batch = kv.decode([0, 1], [step, step])
        batch.seq_lens_cpu, batch.prefix_lens_cpu, batch.extend_lens_cpu = [], [], []

        def refuse(*_: Any, **__: Any) -> Any:
            raise AssertionError("host read in decode prepare")

        with monkeypatch.context() as m:
            for attr in ("item", "tolist", "cpu", "__int__", "__bool__"):
                m.setattr(torch.Tensor, attr, refuse)
            backend.prepare(batch)
        runner.forward(batch)
        workspaces.append(backend._workspace)
    assert workspaces[0] is workspaces[1] is not None


@pytest.mark.gpu
def test_decode_forward_has_no_host_syncs_on_cuda(model_dir: str) -> None:
    loaded = load_model(model_dir, dtype="bfloat16", device=torch.device("cuda"))
    kv = ToyKV(loaded.config, max_reqs=4, max_context=64, dtype=torch.bfloat16, device="cuda")
    runner = ModelRunner(loaded.model, kv.pool, TritonAttentionBackend())
    runner.forward(kv.extend([0, 1], _ids(4, [30, 3])))
    runner.forward(kv.decode([0, 1], [1, 2]))  # compiles the decode kernels
    batch = kv.decode([0, 1], [3, 4])
    backend = runner.attn_backend
    q = torch.randn(2, SHAPE["num_attention_heads"], 16, device="cuda", dtype=torch.bfloat16)
    k = torch.randn(2, SHAPE["num_key_value_heads"], 16, device="cuda", dtype=torch.bfloat16)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        backend.prepare(batch)
        backend.forward(q, k, k.clone(), 0, 0.25, batch)
    finally:
        torch.cuda.set_sync_debug_mode("default")


def _greedy(model_dir: str, backend: str, **engine_kw: Any) -> tuple[list[list[int]], list[int]]:
    import sglang as sgl

    shared, tails = _ids(5, [21])[0], _ids(6, [1, 4, 2])
    prompts = _ids(7, [3, 12]) + [shared + t for t in tails]
    params = {"temperature": 0, "max_new_tokens": 6, "ignore_eos": True}
    with sgl.Engine(model_path=model_dir, device=DEVICE, dtype="float32",
                    attention_backend=backend, debug_check_integrity=True,
                    **engine_kw) as engine:
        out = engine.generate(input_ids=prompts[:3], sampling_params=params)
        out += engine.generate(input_ids=prompts[3:], sampling_params=params)
        engine.check_integrity()
    return [o["output_ids"] for o in out], [o["meta_info"]["cached_tokens"] for o in out]


def test_engine_greedy_equals_torch_backend(llama_dir: str) -> None:
    want, _ = _greedy(llama_dir, "torch")
    got, cached = _greedy(llama_dir, "triton")
    assert cached[3:] == [21, 21]  # the second batch extended over the radix-cached prefix
    assert got == want


def test_engine_greedy_with_rope_fused_into_decode(llama_dir: str) -> None:
    """`fuse_decode_rope`: the same greedy tokens (CUDA graphs replayed on a GPU), and the
    flag is dropped with speculative decoding, whose verify rows read each other's keys."""
    import sglang as sgl

    want, _ = _greedy(llama_dir, "torch")
    got, _ = _greedy(llama_dir, "triton", fuse_decode_rope=True)
    assert got == want
    for spec, fused in ((None, True), ("ngram", False)):
        with sgl.Engine(model_path=llama_dir, device=DEVICE, dtype="float32",
                        attention_backend="triton", fuse_decode_rope=True,
                        speculative_algorithm=spec) as engine:
            assert engine.runtime.scheduler.runner.attn_backend.fuse_decode_rope is fused


def test_rotary_is_fused_into_the_kv_store(llama_dir: str, monkeypatch) -> None:
    """The Triton backend rotates K while writing it into the pool (one kernel, not two)."""
    import sglang.kernels as kernels

    calls = []
    fused = kernels.rotary_embedding_and_store_kv

    def spy(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return fused(*args, **kwargs)

    monkeypatch.setattr(kernels, "rotary_embedding_and_store_kv", spy)
    loaded = load_model(llama_dir, dtype="float32", device=torch.device(DEVICE))
    kv = ToyKV(loaded.config, max_reqs=2, max_context=32, device=DEVICE)
    runner = ModelRunner(loaded.model, kv.pool, TritonAttentionBackend())
    runner.forward(kv.extend([0], _ids(4, [5])))
    assert len(calls) == loaded.config.num_hidden_layers


def _bf16_logits(model_dir: str, backend: Any) -> list[torch.Tensor]:
    loaded = load_model(model_dir, dtype="bfloat16", device=torch.device("cuda"))
    kv = ToyKV(loaded.config, max_reqs=4, max_context=96, dtype=torch.bfloat16, device="cuda")
    runner = ModelRunner(loaded.model, kv.pool, backend)
    logits = [runner.forward(kv.extend([2, 0, 3], _ids(1, [5, 40, 2]), all_logits=True))]
    logits.append(runner.forward(kv.extend([0, 1, 2], _ids(2, [4, 33, 1]), all_logits=True)))
    logits.append(runner.forward(kv.decode([3, 0, 1, 2], [7, 1, 2, 3])))
    return [x.float() for x in logits]


@pytest.mark.gpu
def test_flash_extend_matches_the_triton_kernel(llama_dir: str, monkeypatch) -> None:
    """bf16 on CUDA: extend through torch's FlashAttention-2 (prefill, then over a cached
    prefix) gives the Triton kernel's logits within bf16 rounding."""
    import sglang.kernels as kernels

    calls = []
    real = kernels.varlen_extend_attention
    monkeypatch.setattr(kernels, "varlen_extend_attention",
                        lambda *a, **kw: calls.append(1) or real(*a, **kw))
    flash = _bf16_logits(llama_dir, TritonAttentionBackend())
    assert calls, "the flash path did not run"
    calls.clear()
    triton_only = _bf16_logits(llama_dir, TritonAttentionBackend(use_flash_extend=False))
    assert not calls
    for got, want in zip(flash, triton_only, strict=True):
        assert want.abs().max() > 1.0
        torch.testing.assert_close(got, want, atol=0.05, rtol=0.02)


def test_flash_extend_is_not_used_off_cuda_or_in_fp32() -> None:
    import sglang.kernels as kernels

    assert not kernels.flash_varlen_supported(torch.zeros(4, 2, 64))
    assert not kernels.flash_varlen_supported(torch.zeros(4, 2, 64, dtype=torch.bfloat16))
