"""Gemma 1/2/3, Command-R, StableLM and OLMo 2 against transformers on identical tiny random
weights (torch backend): logits within 1e-4 in float32 on a ragged batch, over a cached prefix,
and along 16 greedy tokens. Prompts run past the 8-token window of the Gemma 2/3 configs."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from sglang.runtime.layers.norm import GemmaRMSNorm, RMSNorm
from sglang.runtime.loading.loader import load_model

sys.path.insert(0, str(Path(__file__).parent))
from fama_parity import (  # noqa: E402
    CONFIGS,
    check_greedy,
    check_prefill_and_cached_prefix_extend,
    save_reference,
)


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def case(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Any:
    folder = tmp_path_factory.mktemp(request.param)
    ref = save_reference(CONFIGS[request.param](), folder)
    return ref, load_model(str(folder), dtype="float32")


def test_prefill_and_cached_prefix_extend(case: Any) -> None:
    check_prefill_and_cached_prefix_extend(*case, "torch")


def test_greedy_16_tokens(case: Any) -> None:
    check_greedy(*case, "torch", steps=16)


@pytest.mark.parametrize("name", ["gemma3_window8", "cohere_qknorm", "olmo2"])
def test_dummy_weights_give_identity_norms(name: str, tmp_path: Path) -> None:
    """Dummy loads (benchmarks) set every norm to its identity scale: 0 for Gemma's
    (1 + weight) norms, 1 elsewhere, the per-head and sharded q/k norms included."""
    config = CONFIGS[name]()
    config.architectures = [_arch(name)]
    config.save_pretrained(tmp_path)
    model = load_model(str(tmp_path), load_format="dummy").model
    norms = [m for m in model.modules() if isinstance(m, RMSNorm)]
    assert len(norms) > 2 * config.num_hidden_layers
    for m in norms:
        want = 0.0 if isinstance(m, GemmaRMSNorm) else 1.0
        assert torch.all(m.weight == want), type(m).__name__


def _arch(name: str) -> str:
    return {"gemma3_window8": "Gemma3ForCausalLM", "cohere_qknorm": "CohereForCausalLM",
            "olmo2": "Olmo2ForCausalLM"}[name]
