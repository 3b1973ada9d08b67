"""tp=2 on CPU (gloo) gives tp=1's logits for the famb families, whose loading splits fused
checkpoint tensors per rank (Phi-3's qkv/gate_up, Qwen's c_attn), keeps per-head q/k norms
whole (Qwen3) and folds Granite's residual multiplier into row-parallel weights; plus GGUF
files (llama with rope_freqs and permuted q/k, phi3 fused) read slice by slice."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from gguf_writers import write_gguf  # noqa: E402
from qwen1_reference import save_qwen_reference  # noqa: E402
from test_models_famb import CONFIGS  # noqa: E402
from test_models_tiny import CONFIGS as TINY_CONFIGS  # noqa: E402
from test_models_tiny import _save_tokenizer  # noqa: E402
from tiny_models import save_hf_model  # noqa: E402
from tp_workers import many_model_logits, run_on_ranks  # noqa: E402

HF_CASES = ["qwen3", "phi3_longrope", "granite"]
GGUF_CASES = {"llama31_gguf": ("llama", TINY_CONFIGS["llama3_tied"]),
              "phi3_gguf": ("phi3", CONFIGS["phi3_longrope"])}
ALL = [*HF_CASES, "qwen1", *GGUF_CASES]


@pytest.fixture(scope="module")
def logits(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Any, Any]]:
    root = tmp_path_factory.mktemp("tp_famb")
    cases = []
    for name in HF_CASES:
        save_hf_model(CONFIGS[name](), root / name)
        _save_tokenizer(root / name)
        cases.append((name, str(root / name), "auto"))
    save_qwen_reference(root / "qwen1")
    _save_tokenizer(root / "qwen1")
    cases.append(("qwen1", str(root / "qwen1"), "auto"))
    for name, (arch, make_config) in GGUF_CASES.items():
        ref = save_hf_model(make_config(), root / f"{name}_hf")
        cases.append((name, write_gguf(ref, arch, root / f"{name}.gguf"), "gguf"))
    single = many_model_logits(cases)
    split = run_on_ranks(2, many_model_logits, cases, tmp=root)
    return {name: (single[name], split[name]) for name in single}


@pytest.mark.parametrize("case", ALL)
def test_tp2_logits_match_tp1(logits: dict[str, tuple[Any, Any]], case: str) -> None:
    single, split = logits[case]
    for step, (a, b) in enumerate(zip(single, split, strict=True)):
        assert torch.isfinite(a).all() and a.abs().max() > 0.1  # not trivially equal
        torch.testing.assert_close(b, a, atol=1e-5, rtol=0, msg=f"{case} step {step}")
