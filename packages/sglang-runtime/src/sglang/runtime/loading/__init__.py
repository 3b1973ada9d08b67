"""Weight loading: HF safetensors folders, GGUF files, dummy weights.

Public to the server for its tokenizer: `load_tokenizer` and `default_model_path`, imported on
first use (`source` needs torch; importing `sglang.runtime.loading.default_model` alone must not).
"""

from __future__ import annotations

import importlib
from typing import Any

# name -> the module that defines it
_EXPORTS = {
    "default_model_path": "sglang.runtime.loading.default_model",
    "load_tokenizer": "sglang.runtime.loading.source",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
