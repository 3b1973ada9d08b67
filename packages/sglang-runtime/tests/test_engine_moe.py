"""sgl.Engine on a tiny random Mixtral folder: greedy tokens at tp=1 equal transformers', and
tp=2 (gloo ranks on CPU, experts split along their intermediate dimension) equals tp=1."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from moe_cases import moe_configs  # noqa: E402
from tiny_models import save_tiny_model  # noqa: E402

PROMPTS = ["t5 t17 t99 t3", "t42", "t7 t8 t9 t10 t11 t12 t13 t14 t150 t151"]
GREEDY = {"temperature": 0, "max_new_tokens": 16, "ignore_eos": True}


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> str:
    return save_tiny_model(moe_configs()["mixtral"](), tmp_path_factory.mktemp("mixtral"))


def _greedy(folder: str, tp: int) -> list[list[int]]:
    import sglang as sgl

    eng = sgl.Engine(model_path=folder, dtype="float32", tp_size=tp, max_total_tokens=2048,
                     debug_check_integrity=True)
    try:
        return [o["output_ids"] for o in eng.generate(PROMPTS, GREEDY)]
    finally:
        eng.shutdown()


def test_engine_greedy_matches_transformers_and_tp2(folder: str) -> None:
    import transformers

    tok = transformers.AutoTokenizer.from_pretrained(folder)
    ref = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    single = _greedy(folder, 1)
    for prompt, got in zip(PROMPTS, single, strict=True):
        ids = tok(prompt).input_ids
        with torch.no_grad():
            out = ref.generate(torch.tensor([ids]), max_new_tokens=16, do_sample=False,
                               attention_mask=torch.ones(1, len(ids), dtype=torch.long))
        assert got == out[0, len(ids):].tolist()
    assert _greedy(folder, 2) == single


def _greedy_ids(folder: str, **kwargs: Any) -> list[list[int]]:
    import sglang as sgl

    g = torch.Generator().manual_seed(3)
    prompts = [torch.randint(0, 160, (n,), generator=g).tolist() for n in (1, 7, 33, 90, 5)]
    with sgl.Engine(model_path=folder, debug_check_integrity=True, max_total_tokens=4096,
                    **kwargs) as engine:
        out = [engine.generate(input_ids=prompts[0], sampling_params=GREEDY)]
        out += engine.generate(input_ids=prompts, sampling_params=GREEDY)
        engine.check_integrity()
    return [o["output_ids"] for o in out]


@pytest.mark.gpu
def test_cuda_fused_kernel_equals_cpu_and_graphs_equal_eager(folder: str) -> None:
    # On CUDA the experts run in the fused Triton kernel, decode replays CUDA graphs.
    cpu = _greedy_ids(folder, device="cpu", dtype="float32", attention_backend="torch")
    assert _greedy_ids(folder, device="cuda", dtype="float32") == cpu
    graphs = _greedy_ids(folder, device="cuda", dtype="bfloat16")
    assert graphs == _greedy_ids(folder, device="cuda", dtype="bfloat16", disable_cuda_graph=True)
