"""tp=2 ≡ tp=1 on CPU (gloo) for the Gemma / Command-R / StableLM / OLMo 2 families: the same
logits for a ragged prefill, an extend over a cached prefix and decode steps. OLMo 2 runs with
one KV head, replicated on both ranks, so its whole-projection k norm sums a replicated
shard."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import transformers

sys.path.insert(0, str(Path(__file__).parent))
from fama_parity import CONFIGS, SHAPE, save_reference  # noqa: E402
from tp_workers import many_model_logits, run_on_ranks  # noqa: E402

CASES: dict[str, Any] = {
    "gemma3_window8": CONFIGS["gemma3_window8"],
    "gemma2_window8": CONFIGS["gemma2_window8"],
    "cohere_qknorm": CONFIGS["cohere_qknorm"],
    "stablelm_parallel_qknorm": CONFIGS["stablelm_parallel_qknorm"],
    "olmo2_kv1": lambda: transformers.Olmo2Config(**{**SHAPE, "num_key_value_heads": 1}),
}


@pytest.fixture(scope="module")
def logits(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Any, Any]]:
    root = tmp_path_factory.mktemp("tp_fama")
    cases = []
    for name, make in CASES.items():
        save_reference(make(), root / name)
        cases.append((name, str(root / name), "auto"))
    single = many_model_logits(cases)
    split = run_on_ranks(2, many_model_logits, cases, tmp=root)
    return {name: (single[name], split[name]) for name in single}


@pytest.mark.parametrize("case", list(CASES))
def test_tp2_logits_match_tp1(logits: dict[str, tuple[Any, Any]], case: str) -> None:
    single, split = logits[case]
    for step, (a, b) in enumerate(zip(single, split, strict=True)):
        assert a.abs().max() > 0.5  # not trivially equal
        torch.testing.assert_close(b, a, atol=1e-4, rtol=0, msg=f"{case} step {step}")
