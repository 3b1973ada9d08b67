"""Speculative verify steps on the Triton attention backend (the interpreter on CPU): a tiny
random-weight Llama gives the same greedy tokens with n-gram drafts as the torch backend
without them, radix-cached prefix included, and leaks no KV."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import transformers

sys.path.insert(0, str(Path(__file__).parent))
from tiny_models import save_tiny_model  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
VOCAB = 64


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    config = transformers.LlamaConfig(
        vocab_size=VOCAB, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
    )
    return save_tiny_model(config, tmp_path_factory.mktemp("spec_llama"))


def _run(model_dir: str, verify_as_decode: bool | None = None, **kwargs: Any
         ) -> list[dict[str, Any]]:
    import sglang as sgl

    g = torch.Generator().manual_seed(11)
    motif = torch.randint(0, VOCAB, (7,), generator=g).tolist()
    # Repeated motifs give the proposer something to match; the second batch reuses the first
    # prompt as a cached prefix.
    prompts = [motif * 3, torch.randint(0, VOCAB, (9,), generator=g).tolist()]
    params = {"temperature": 0, "max_new_tokens": 12, "ignore_eos": True}
    with sgl.Engine(model_path=model_dir, device=DEVICE, dtype="float32",
                    debug_check_integrity=True, **kwargs) as engine:
        if verify_as_decode is not None:
            engine._call(lambda s: setattr(s, "verify_as_decode", verify_as_decode))
        out = engine.generate(input_ids=prompts, sampling_params=params)
        out += engine.generate(input_ids=[prompts[0] + motif[:3]], sampling_params=params)
        engine.check_integrity()
    return out


@pytest.mark.parametrize("verify_as_decode", [None, True, False],
                         ids=["default", "decode-rows", "extend"])
def test_triton_verify_equals_torch_decode(llama_dir: str, verify_as_decode: bool | None
                                           ) -> None:
    """Both verify layouts: an EXTEND batch (the extend kernel sees k + 1 tokens) and decode
    rows (the decode kernel reads one table row from several rows of the batch)."""
    want = _run(llama_dir, attention_backend="torch")
    got = _run(llama_dir, verify_as_decode, attention_backend="triton",
               speculative_algorithm="ngram", speculative_num_draft_tokens=3)
    assert [o["output_ids"] for o in got] == [o["output_ids"] for o in want]
    assert got[2]["meta_info"]["cached_tokens"] > 0
    # Drafts were verified, and some accepted.
    assert sum(o["meta_info"]["spec_accepted_tokens"] for o in got) > 0
