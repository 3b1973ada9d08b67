"""Gemma 1/2/3, Command-R, StableLM and OLMo 2 against transformers on identical tiny random
weights (torch backend): logits within 1e-4 in float32 on a ragged batch, over a cached prefix,
and along 16 greedy tokens. Prompts run past the 8-token window of the Gemma 2/3 configs."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

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
