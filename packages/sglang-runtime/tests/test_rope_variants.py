"""Every RoPE rule of sglang.kernels against transformers' ROPE_INIT_FUNCTIONS on one config."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import transformers
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

import sglang.kernels as kernels
from sglang.runtime.layers.rotary import RotaryEmbedding, rope_parameters

HEAD_DIM = 32
BASE: dict[str, Any] = dict(
    vocab_size=64, hidden_size=128, num_attention_heads=4, num_key_value_heads=2,
    max_position_embeddings=512,
)
VARIANTS: dict[str, dict[str, Any]] = {
    "default": {"rope_type": "default"},
    "linear": {"rope_type": "linear", "factor": 3.0},
    "dynamic": {"rope_type": "dynamic", "factor": 2.0},
    "yarn": {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 128},
    "yarn_mscale": {"rope_type": "yarn", "factor": 8.0, "original_max_position_embeddings": 64,
                    "mscale": 0.707, "mscale_all_dim": 1.0, "beta_fast": 16, "beta_slow": 2},
    "yarn_no_truncate": {"rope_type": "yarn", "factor": 4.0, "truncate": False,
                         "original_max_position_embeddings": 128},
    "llama3": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
               "high_freq_factor": 4.0, "original_max_position_embeddings": 64},
    "longrope": {"rope_type": "longrope", "original_max_position_embeddings": 128,
                 "short_factor": [1.0 + 0.1 * i for i in range(HEAD_DIM // 2)],
                 "long_factor": [1.5 + 0.5 * i for i in range(HEAD_DIM // 2)]},
}


def _config(variant: str) -> Any:
    params = {"rope_theta": 10000.0, **VARIANTS[variant]}
    return transformers.LlamaConfig(**BASE, rope_parameters=params)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_frequencies_match_transformers(variant: str) -> None:
    config = _config(variant)
    params = rope_parameters(config)
    ours = kernels.rope_frequencies(HEAD_DIM, params["rope_theta"], params,
                                    config.max_position_embeddings)
    fn = ROPE_INIT_FUNCTIONS.get(params["rope_type"])
    if fn is None:  # transformers computes "default" inline
        want = 1.0 / 10000.0 ** (torch.arange(0, HEAD_DIM, 2).float() / HEAD_DIM)
        want_attn = 1.0
    else:
        want, want_attn = fn(config, "cpu")
    torch.testing.assert_close(ours.inv_freq, want, rtol=1e-6, atol=0)
    assert ours.attention_factor == pytest.approx(want_attn, rel=1e-9)
    if variant == "longrope":
        long, _ = fn(config, "cpu", seq_len=config.max_position_embeddings)
        torch.testing.assert_close(ours.long_inv_freq, long, rtol=1e-6, atol=0)
        assert ours.attention_factor > 1.0  # factor = 512 / 128 from the config


def test_scaled_rules_differ_from_default() -> None:
    """Guards the comparison above against a rule that silently returns the defaults."""
    plain = kernels.rope_inv_freq(HEAD_DIM, 10000.0)
    for variant in ("linear", "yarn", "llama3", "longrope"):
        params = rope_parameters(_config(variant))
        assert not torch.allclose(kernels.rope_inv_freq(HEAD_DIM, 10000.0, params, 512), plain)


def test_tables_fold_attention_factor_and_switch_longrope() -> None:
    params = rope_parameters(_config("longrope"))
    rotary = RotaryEmbedding(HEAD_DIM, 512, params)
    freqs = kernels.rope_frequencies(HEAD_DIM, 10000.0, params, 512)
    a = freqs.attention_factor
    torch.testing.assert_close(rotary.cos[100], torch.cos(100 * freqs.inv_freq) * a)
    torch.testing.assert_close(rotary.sin[300], torch.sin(300 * freqs.long_inv_freq) * a)
    cache = kernels.rope_cos_sin_cache(HEAD_DIM, HEAD_DIM, 512, 10000.0, params)
    torch.testing.assert_close(cache, rotary.cos_sin)


def test_su_alias_and_unknown_rule() -> None:
    params = {**VARIANTS["longrope"], "rope_type": "su"}
    assert kernels.rope_frequencies(HEAD_DIM, 1e4, params, 512).long_from == 128
    with pytest.raises(NotImplementedError, match="longrope"):
        kernels.rope_inv_freq(HEAD_DIM, 1e4, {"rope_type": "nope"})
