"""Gemma 2 (8-token sliding window on alternate layers, soft-capping) through the whole Engine:
chunked prefill in 8-token chunks and radix-cache hits over a shared 21-token prefix, all
longer than the window, give HF's greedy tokens."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from fama_parity import CONFIGS, VOCAB, prompts, ref_greedy, save_reference  # noqa: E402

NEW = 16


@pytest.mark.parametrize("chunk", [8, 4096])
def test_engine_greedy_matches_transformers(chunk: int, tmp_path: Path) -> None:
    import sglang as sgl

    config = CONFIGS["gemma2_window8"]()
    config.architectures = ["Gemma2ForCausalLM"]
    ref = save_reference(config, tmp_path)
    shared = prompts([21], VOCAB, seed=5)[0]
    batch = prompts([3, 26], VOCAB, seed=6) + [shared + t for t in prompts([1, 5], VOCAB, 7)]
    params = {"temperature": 0, "max_new_tokens": NEW, "ignore_eos": True}
    with sgl.Engine(model_path=str(tmp_path), device="cpu", dtype="float32",
                    attention_backend="torch", chunked_prefill_size=chunk,
                    debug_check_integrity=True) as engine:
        out = engine.generate(input_ids=batch[:3], sampling_params=params)
        out += engine.generate(input_ids=batch[3:], sampling_params=params)
    assert out[3]["meta_info"]["cached_tokens"] >= 21  # extended over the radix-cached prefix
    with torch.no_grad():
        want = [ref_greedy(ref, ids, NEW)[0] for ids in batch]
    assert [o["output_ids"] for o in out] == want
