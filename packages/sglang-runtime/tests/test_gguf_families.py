"""GGUF beyond SmolLM2: tiny files written (gguf package) from tiny HF models load to the
logits of the HF reference and of our load of the HF folder; an unknown architecture fails
naming itself and the supported ones."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import transformers

import sglang.kernels as kernels
from sglang.runtime.loading.loader import load_model

sys.path.insert(0, str(Path(__file__).parent))
from batch_helpers import ToyKV, make_runner  # noqa: E402
from fama_parity import save_reference  # noqa: E402
from gguf_writers import BOS, EOS, llama3_rope_factors, write_gguf  # noqa: E402
from test_models_famb import CONFIGS as FAMB_CONFIGS  # noqa: E402
from test_models_tiny import CONFIGS as TINY_CONFIGS  # noqa: E402
from test_models_tiny import SHAPE as TINY_SHAPE  # noqa: E402
from test_models_tiny import _prompts, _save_tokenizer  # noqa: E402
from tiny_models import save_hf_model  # noqa: E402

ATOL = 1e-4
GEMMA = dict(TINY_SHAPE, head_dim=16)
CASES: dict[str, tuple[str, Any]] = {
    # Llama 3.1-style: llama3 rope (rope_freqs tensor), tied head, permuted q/k.
    "llama31": ("llama", TINY_CONFIGS["llama3_tied"]),
    "qwen2": ("qwen2", TINY_CONFIGS["qwen2"]),
    "qwen3": ("qwen3", FAMB_CONFIGS["qwen3"]),
    "phi3": ("phi3", FAMB_CONFIGS["phi3_longrope"]),
    # Gemma: norms stored as w + 1; query scale 1/sqrt(head_dim) as llama.cpp assumes.
    "gemma2": ("gemma2", lambda: transformers.Gemma2Config(
        **GEMMA, sliding_window=8, query_pre_attn_scalar=16, attn_logit_softcapping=2.0,
        final_logit_softcapping=6.0)),
    "gemma3": ("gemma3", lambda: transformers.Gemma3TextConfig(
        **GEMMA, sliding_window=8, query_pre_attn_scalar=16,
        layer_types=["sliding_attention", "full_attention", "sliding_attention"],
        rope_parameters={
            "sliding_attention": {"rope_type": "default", "rope_theta": 100.0},
            "full_attention": {"rope_type": "linear", "rope_theta": 10000.0, "factor": 2.0},
        })),
}


@pytest.fixture(scope="module", params=sorted(CASES))
def loaded(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Any:
    arch, make_config = CASES[request.param]
    folder = tmp_path_factory.mktemp(request.param)
    config = make_config()
    if arch.startswith("gemma"):
        ref = save_reference(config, folder)  # (1 + w) norms get weights away from zero
    else:
        ref = save_hf_model(config, folder)
        _save_tokenizer(folder)
    path = write_gguf(ref, arch, folder.parent / f"{request.param}-tiny.gguf")
    return ref, load_model(path, dtype="float32"), load_model(str(folder), dtype="float32")


def _all_logits(loaded_model: Any, prompts: list[list[int]]) -> torch.Tensor:
    kv = ToyKV(loaded_model.config)
    runner = make_runner(loaded_model.model, kv)
    return runner.forward(kv.extend(list(range(len(prompts))), prompts, all_logits=True))


def test_gguf_logits_match_hf(loaded: Any) -> None:
    ref, from_gguf, from_hf = loaded
    assert type(from_gguf.model) is type(from_hf.model)
    prompts = _prompts(4, seed=7)
    got = _all_logits(from_gguf, prompts)
    torch.testing.assert_close(got, _all_logits(from_hf, prompts), atol=1e-5, rtol=0)
    offset = 0
    for ids in prompts:
        with torch.no_grad():
            want = ref(torch.tensor([ids])).logits[0].float()
        torch.testing.assert_close(got[offset : offset + len(ids)], want, atol=ATOL, rtol=0)
        offset += len(ids)


def test_gguf_tokenizer_and_ids(loaded: Any) -> None:
    _, from_gguf, _ = loaded
    tok = from_gguf.tokenizer
    assert tok("abcd")["input_ids"][-2:] == [156, 157]
    assert (from_gguf.config.bos_token_id, from_gguf.config.eos_token_id) == (BOS, EOS)


def test_rope_freqs_equal_llama3_rule() -> None:
    """The `rope_freqs` tensor llama.cpp writes for Llama 3.1+ gives the frequencies that the
    config's llama3 rule gives (so loading either way rotates alike)."""
    config = TINY_CONFIGS["llama3_tied"]()
    dim = config.hidden_size // config.num_attention_heads
    params = dict(config.rope_parameters)
    from_factors = kernels.rope_inv_freq(dim, params["rope_theta"], {
        "rope_type": "freq_factors", "freq_factors": llama3_rope_factors(config, dim)})
    llama3 = kernels.rope_inv_freq(dim, params["rope_theta"], params)
    torch.testing.assert_close(from_factors, llama3, rtol=1e-6, atol=0)
    assert not torch.allclose(llama3, kernels.rope_inv_freq(dim, params["rope_theta"]))


def test_unsupported_architecture_is_named(tmp_path: Path) -> None:
    import gguf

    path = tmp_path / "falcon.gguf"
    w = gguf.GGUFWriter(str(path), "falcon")
    w.add_block_count(1)
    w.add_tensor("token_embd.weight", np.zeros((4, 4), np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with pytest.raises(NotImplementedError, match=r"'falcon'.*gemma2.*llama.*phi3.*qwen3"):
        load_model(str(path), dtype="float32")
