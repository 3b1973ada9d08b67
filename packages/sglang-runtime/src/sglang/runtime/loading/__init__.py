"""Weight loading: HF safetensors folders, GGUF files, dummy weights.

Public to the server for its tokenizer (`load_tokenizer`, `default_model_path`), the start-up
check of its model paths (`resolve_model_paths`, `ModelPathError`) and, on its first
request with media, the model's typed config (`load_model_config`). Each is imported on first
use (`source` and `loader` need torch; importing `sglang.runtime.loading` alone must not).
"""

from __future__ import annotations

import importlib
from typing import Any

# name -> the module that defines it
_EXPORTS = {
    "ModelPathError": "sglang.runtime.loading.default_model",
    "default_model_path": "sglang.runtime.loading.default_model",
    "resolve_model_paths": "sglang.runtime.loading.default_model",
    "load_model_config": "sglang.runtime.loading.loader",
    "load_tokenizer": "sglang.runtime.loading.source",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
