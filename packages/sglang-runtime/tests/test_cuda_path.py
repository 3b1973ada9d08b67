"""The CUDA path (Triton attention, decode CUDA graphs) against the CPU torch backend.

A random-weight Llama saved as an HF folder is run greedily by two engines on identical weights:
one on CPU with the torch backend (the oracle), one on CUDA in float32 with the defaults there
(Triton backend, decode replayed from CUDA graphs). Token ids must be equal. GPU only.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from tiny_models import save_tiny_model  # noqa: E402

pytestmark = pytest.mark.gpu

VOCAB = 512


def _tiny_llama_config() -> Any:
    import transformers

    return transformers.LlamaConfig(
        vocab_size=VOCAB, hidden_size=256, intermediate_size=512, num_hidden_layers=4,
        num_attention_heads=8, num_key_value_heads=2, max_position_embeddings=1024,
    )


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    return save_tiny_model(_tiny_llama_config(), tmp_path_factory.mktemp("tiny_llama_cuda"))


def _prompts() -> list[list[int]]:
    g = torch.Generator().manual_seed(3)
    shared = torch.randint(0, VOCAB, (40,), generator=g).tolist()
    lens = [1, 7, 33, 100, 250, 5, 64, 17]
    distinct = [torch.randint(0, VOCAB, (n,), generator=g).tolist() for n in lens]
    # Shared-prefix prompts exercise extend over a cached prefix on the second batch.
    return distinct + [shared + [i] for i in range(6)]


def _greedy(model_dir: str, prompts: list[list[int]], **kwargs: Any) -> list[list[int]]:
    import sglang as sgl

    params = {"temperature": 0, "max_new_tokens": 24, "ignore_eos": True}
    # A fixed small KV pool: several engines are built one after another in this process.
    with sgl.Engine(model_path=model_dir, debug_check_integrity=True, max_total_tokens=8192,
                    **kwargs) as engine:
        out = engine.generate(input_ids=prompts[:8], sampling_params=params)
        out += engine.generate(input_ids=prompts[8:], sampling_params=params)
        engine.check_integrity()
    return [o["output_ids"] for o in out]


def test_cuda_greedy_equals_cpu_torch_backend(model_dir: str) -> None:
    prompts = _prompts()
    cpu = _greedy(model_dir, prompts, device="cpu", dtype="float32", attention_backend="torch")
    cuda = _greedy(model_dir, prompts, device="cuda", dtype="float32")
    assert cuda == cpu


def test_cuda_graphs_equal_eager(model_dir: str) -> None:
    prompts = _prompts()
    graphs = _greedy(model_dir, prompts, device="cuda", dtype="bfloat16")
    eager = _greedy(model_dir, prompts, device="cuda", dtype="bfloat16", disable_cuda_graph=True)
    assert graphs == eager


def test_graph_capture_is_used(model_dir: str) -> None:
    import sglang as sgl

    with sgl.Engine(model_path=model_dir, device="cuda", cuda_graph_max_bs=16,
                    max_total_tokens=8192) as engine:
        runner = engine._call(lambda scheduler: scheduler.runner)
        assert runner.cuda_graphs is not None
        assert runner.cuda_graphs.sizes == [1, 2, 4, 8, 16]
        out = engine.generate(input_ids=[[1, 2, 3]] * 20, sampling_params={"max_new_tokens": 4})
        assert all(o["meta_info"]["completion_tokens"] == 4 for o in out)


def _greedy_small_batches(model_dir: str, **kwargs: Any) -> list[list[int]]:
    """Decode at batch 1 (the GEMV's, gemv_max_batch=1) and batch 3 (cuBLAS)."""
    import sglang as sgl

    prompts = _prompts()
    params = {"temperature": 0, "max_new_tokens": 24, "ignore_eos": True}
    with sgl.Engine(model_path=model_dir, debug_check_integrity=True, max_total_tokens=8192,
                    **kwargs) as engine:
        if kwargs.get("device") == "cuda":
            runner = engine._call(lambda scheduler: scheduler.runner)
            down = runner.model.model.layers[0].mlp.down_proj.weight
            # One plan entry per row count the GEMV may take (None: cuBLAS measured faster).
            assert len(getattr(down, "_sgl_gemv_plan", ())) == kwargs.get("gemv_max_batch", 1)
        out = [engine.generate(input_ids=p, sampling_params=params) for p in prompts[:2]]
        out += engine.generate(input_ids=prompts[2:5], sampling_params=params)
        engine.check_integrity()
    return [o["output_ids"] for o in out]


def test_small_batch_gemv_decode_equals_cpu(model_dir: str) -> None:
    cpu = _greedy_small_batches(model_dir, device="cpu", dtype="float32",
                                attention_backend="torch")
    cuda = _greedy_small_batches(model_dir, device="cuda", dtype="float32")
    assert cuda == cpu


def test_small_batch_graphs_equal_eager_and_cublas(model_dir: str) -> None:
    graphs = _greedy_small_batches(model_dir, device="cuda", dtype="bfloat16")
    eager = _greedy_small_batches(model_dir, device="cuda", dtype="bfloat16",
                                  disable_cuda_graph=True)
    assert graphs == eager  # the same kernels, replayed or launched one by one
    cublas = _greedy_small_batches(model_dir, device="cuda", dtype="float32", gemv_max_batch=0)
    gemv = _greedy_small_batches(model_dir, device="cuda", dtype="float32")
    assert gemv == cublas


@pytest.mark.parametrize("rows", [1, 3, 4, 5])
def test_linear_with_gemv_up_to_four_rows(rows: int) -> None:
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    from sglang.runtime.layers import gemm
    from sglang.runtime.layers.linear import Linear

    layer = Linear(256, 96, bias=True, dtype=torch.bfloat16).cuda()
    torch.nn.init.normal_(layer.weight, std=0.05)
    torch.nn.init.normal_(layer.bias)
    gemm.prepare_weights(layer, gemv_max_batch=4)
    x = torch.randn(rows, 256, device="cuda", dtype=torch.bfloat16)
    want = torch.nn.functional.linear(x.float(), layer.weight.float(), layer.bias.float())
    torch.testing.assert_close(layer(x).float(), want, atol=3e-2, rtol=3e-2)
