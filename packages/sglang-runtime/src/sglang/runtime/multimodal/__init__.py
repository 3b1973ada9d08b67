"""The runtime side of multimodal requests, torch-free: media loading, placeholder ids, typed
items and the input-processor interface. Models and encoders live in plug-ins.

Public to the server (`PUBLIC_MODULES`) for `input_processor_for`, imported on first use so that
text-only serving never loads the processor machinery."""

from __future__ import annotations

import importlib
from typing import Any

# name -> the module that defines it
_EXPORTS = {
    "input_processor_for": "sglang.runtime.multimodal.processor",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
