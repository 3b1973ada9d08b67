"""Tiny random MoE models (Mixtral, Qwen2-MoE, Qwen3-MoE, DBRX) against transformers on equal
weights: the tiny-model parity checks (ragged prefill, cached prefix, decode) plus 16 greedy
tokens, and the routing / loading pieces on their own."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from moe_cases import VOCAB, greedy_tokens, moe_configs  # noqa: E402
from test_models_tiny import (  # noqa: E402, F401  (collected here against this module's `pair`)
    test_decode_steps,
    test_prefill_ragged_batch,
    test_prefix_cached_extend,
)
from tiny_models import save_tiny_model  # noqa: E402

from sglang.runtime.loading.loader import load_model

CONFIGS = moe_configs()


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def pair(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Any:
    import transformers

    folder = tmp_path_factory.mktemp(request.param)
    save_tiny_model(CONFIGS[request.param](), folder)
    ref = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    return request.param, ref, load_model(str(folder), dtype="float32")


def test_sixteen_greedy_tokens(pair: Any) -> None:
    _, ref, ours = pair
    g = torch.Generator().manual_seed(5)
    prompts = [torch.randint(0, VOCAB, (n,), generator=g).tolist() for n in (6, 13, 2)]
    got = greedy_tokens(ours.model, ours.config, prompts, 16)
    for ids, tokens in zip(prompts, got, strict=True):
        with torch.no_grad():
            out = ref.generate(torch.tensor([ids]), max_new_tokens=16, do_sample=False,
                               attention_mask=torch.ones(1, len(ids), dtype=torch.long))
        assert tokens == out[0, len(ids):].tolist()


# DBRX's transformers model keeps its experts in another layout; its logits tests cover it.
@pytest.mark.parametrize("pair", ["mixtral", "qwen2_moe", "qwen3_moe"], indirect=True)
def test_expert_weights_stacked_in_their_slices(pair: Any) -> None:
    # Expert 1's gate and up matrices sit in its half-rows of w13; its down matrix in w2[1].
    _, ref, ours = pair
    layer = next(i for i, lay in enumerate(ours.model.model.layers) if hasattr(lay.mlp, "experts"))
    theirs = ref.model.layers[layer].mlp.experts
    mine = ours.model.model.layers[layer].mlp.experts
    torch.testing.assert_close(mine.w13[1], theirs.gate_up_proj[1], atol=0, rtol=0)
    torch.testing.assert_close(mine.w2[1], theirs.down_proj[1], atol=0, rtol=0)
