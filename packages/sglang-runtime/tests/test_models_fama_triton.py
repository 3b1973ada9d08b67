"""The Gemma 2/3 and Command-R parity checks on the Triton attention backend (its kernels run
under TRITON_INTERPRET on CPU): per-layer sliding windows, attention soft-capping and the
GPT-J-style rope fused into the KV store. Few decode steps: the interpreter is slow."""

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

TRITON = ["cohere", "gemma2_window8", "gemma3_window8"]


@pytest.fixture(scope="module", params=TRITON)
def case(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Any:
    folder = tmp_path_factory.mktemp(request.param)
    ref = save_reference(CONFIGS[request.param](), folder)
    return ref, load_model(str(folder), dtype="float32")


def test_prefill_and_cached_prefix_extend(case: Any) -> None:
    check_prefill_and_cached_prefix_extend(*case, "triton")


def test_greedy_decode(case: Any) -> None:
    check_greedy(*case, "triton", steps=3)
