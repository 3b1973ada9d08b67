"""Tensor-parallel MoE on CPU: every expert's intermediate dimension split over 2 gloo ranks
(down-projection partial sums all-reduced) gives the tp=1 logits and the same 16 greedy tokens,
for Mixtral, Qwen2-MoE (with its shared expert) and Qwen3-MoE, and for dummy weights."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from moe_cases import moe_configs, rank_results  # noqa: E402
from tiny_models import save_tiny_model  # noqa: E402
from tp_workers import run_on_ranks  # noqa: E402

from sglang.runtime.layers.moe import StackedExperts  # noqa: E402

CONFIGS = moe_configs()
CASES = [*sorted(CONFIGS), "mixtral_dummy_weights"]


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], dict[str, Any]]:
    root = tmp_path_factory.mktemp("tp_moe")
    cases = [(name, save_tiny_model(make(), root / name), "auto") for name, make in CONFIGS.items()]
    cases.append(("mixtral_dummy_weights", str(root / "mixtral"), "dummy"))
    return rank_results(cases), run_on_ranks(2, rank_results, cases, tmp=root)


@pytest.mark.parametrize("case", CASES)
def test_tp2_matches_tp1(results: tuple[dict[str, Any], dict[str, Any]], case: str) -> None:
    (single_logits, single_tokens), (split_logits, split_tokens) = (r[case] for r in results)
    for step, (a, b) in enumerate(zip(single_logits, split_logits, strict=True)):
        assert torch.isfinite(a).all() and a.abs().max() > 0.1  # not trivially equal
        torch.testing.assert_close(b, a, atol=1e-4, rtol=0, msg=f"{case} step {step}")
    assert split_tokens == single_tokens and len(single_tokens[0]) == 16


def test_expert_shards_cover_the_intermediate_dimension(monkeypatch: pytest.MonkeyPatch) -> None:
    # Rank r's gate/up/down slices of expert e are rows / columns [start, start + n) of I.
    import sglang.runtime.layers.moe as moe

    seen = []
    for rank in range(3):
        monkeypatch.setattr(moe, "get_tp_rank", lambda r=rank: r)
        monkeypatch.setattr(moe, "get_tp_size", lambda: 3)
        experts = StackedExperts(2, 4, 10)
        gate, down = experts.shard_spec("w13", "gate:1"), experts.shard_spec("w2", "down:1")
        assert gate is not None and down is not None
        assert gate.checkpoint_shape == (10, 4) and down.checkpoint_shape == (4, 10)
        assert gate.start == down.start and gate.size == down.size == experts.inter
        seen.extend(range(gate.start, gate.start + gate.size))
    assert seen == list(range(10))
