"""sgl.Engine end to end on two famb formats the loader reaches by a new path: a Qwen (1)
remote-code folder (its config adapter) and a Phi-3 GGUF file (fused tensors, longrope
factors). Greedy ids, batched, equal the reference's greedy continuation."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from gguf_writers import write_gguf  # noqa: E402
from qwen1_reference import save_qwen_reference  # noqa: E402
from test_models_famb import CONFIGS  # noqa: E402
from test_models_tiny import _save_tokenizer  # noqa: E402
from tiny_models import save_hf_model  # noqa: E402

NEW = 10
PROMPTS = [[5, 17, 3, 99, 120], [42], [7, 7, 8, 150, 2, 64, 33, 1]]


@pytest.fixture(scope="module", params=["qwen1", "phi3_gguf"])
def engine_and_ref(request: pytest.FixtureRequest,
                   tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Any]]:
    import sglang as sgl

    root = tmp_path_factory.mktemp(request.param)
    if request.param == "qwen1":
        ref: Any = save_qwen_reference(root)
        _save_tokenizer(root)
        path = str(root)
    else:
        ref = save_hf_model(CONFIGS["phi3_longrope"](), root / "hf")
        path = write_gguf(ref, "phi3", root / "phi3.gguf")
    eng = sgl.Engine(model_path=path, device="cpu", dtype="float32", max_total_tokens=2048,
                     debug_check_integrity=True)
    yield eng, ref
    eng.shutdown()


@torch.no_grad()
def _ref_greedy(ref: Any, ids: list[int]) -> list[int]:
    seq = list(ids)
    for _ in range(NEW):
        seq.append(int(ref(torch.tensor([seq])).logits[0, -1].argmax()))
    return seq[len(ids):]


def test_engine_greedy_matches_reference(engine_and_ref: tuple[Any, Any]) -> None:
    engine, ref = engine_and_ref
    params = {"temperature": 0, "max_new_tokens": NEW, "ignore_eos": True}
    outs = engine.generate(input_ids=PROMPTS, sampling_params=params)
    assert [o["output_ids"] for o in outs] == [_ref_greedy(ref, p) for p in PROMPTS]
