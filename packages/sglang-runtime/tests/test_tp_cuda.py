"""The tensor-parallel CUDA path on one GPU: NCCL with one rank (collectives, also inside a
captured CUDA graph), and an Engine that joins a one-rank NCCL group still captures its decode
graphs and answers like one that does not. The multi-GPU runs are a separate issue. GPU only."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from tiny_models import save_tiny_model  # noqa: E402
from tp_workers import free_addr  # noqa: E402

pytestmark = pytest.mark.gpu

VOCAB = 512
GREEDY = {"temperature": 0, "max_new_tokens": 16, "ignore_eos": True}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    import transformers

    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    config = transformers.LlamaConfig(
        vocab_size=VOCAB, hidden_size=256, intermediate_size=512, num_hidden_layers=2,
        num_attention_heads=8, num_key_value_heads=2, max_position_embeddings=512,
    )
    return save_tiny_model(config, tmp_path_factory.mktemp("tiny_llama_nccl"))


def test_nccl_one_rank_collectives_inside_a_cuda_graph() -> None:
    import torch.distributed as dist

    from sglang.runtime.distributed import destroy_distributed, init_distributed

    group = init_distributed(0, 1, free_addr(), torch.device("cuda", 0))
    try:
        assert dist.get_backend(group.device_group) == "nccl"
        x = torch.arange(4.0, device="cuda")
        dist.all_reduce(x, group=group.device_group)
        assert x.tolist() == [0.0, 1.0, 2.0, 3.0]
        static = torch.zeros(8, device="cuda")
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):  # warm-up outside the capture
            dist.all_reduce(static, group=group.device_group)
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            static.add_(1.0)
            dist.all_reduce(static, group=group.device_group)
        for step in range(1, 4):
            graph.replay()
            torch.cuda.synchronize()
            assert static.tolist() == [float(step)] * 8
    finally:
        destroy_distributed()
    assert not dist.is_initialized()


def test_engine_in_a_one_rank_nccl_group_captures_graphs_and_matches(model_dir: str) -> None:
    import torch.distributed as dist

    import sglang as sgl

    prompts = [[1, 2, 3], [7] * 20, list(range(40, 90))]
    with sgl.Engine(model_path=model_dir, device="cuda", dtype="float32") as plain:
        expected = [o["output_ids"] for o in plain.generate(input_ids=prompts,
                                                            sampling_params=GREEDY)]
    with sgl.Engine(model_path=model_dir, device="cuda", dtype="float32",
                    dist_init_addr=free_addr(), debug_check_integrity=True) as eng:
        assert dist.is_initialized() and dist.get_backend() == "nccl"
        runner = eng._call(lambda scheduler: scheduler.runner)
        assert runner.cuda_graphs is not None
        got = [o["output_ids"] for o in eng.generate(input_ids=prompts, sampling_params=GREEDY)]
        eng.check_integrity()
    assert got == expected
    assert not dist.is_initialized()


def test_tp2_on_two_gpus_matches_tp1(model_dir: str) -> None:
    """Two ranks over NCCL on two GPUs (the multi-GPU run; skipped on one GPU)."""
    if torch.cuda.device_count() < 2:
        pytest.skip("needs 2 GPUs")
    import sglang as sgl

    prompts = [[1, 2, 3], [7] * 20, list(range(40, 90)), list(range(5, 300))]
    kwargs = dict(model_path=model_dir, device="cuda", dtype="float32", max_total_tokens=8192)
    with sgl.Engine(**kwargs) as one:
        expected = [o["output_ids"] for o in one.generate(input_ids=prompts,
                                                          sampling_params=GREEDY)]
    with sgl.Engine(tp_size=2, **kwargs) as two:
        got = [o["output_ids"] for o in two.generate(input_ids=prompts, sampling_params=GREEDY)]
        two.check_integrity()
    assert got == expected
