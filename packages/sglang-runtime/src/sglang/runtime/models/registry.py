"""Model classes keyed by the HF `architectures` names they implement."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, TypeVar

from torch import nn

ModelT = TypeVar("ModelT", bound=type[nn.Module])

_REGISTRY: dict[str, type[nn.Module]] = {}
# Family modules imported on first lookup so that each registers its architectures.
_BUILTIN_MODULES = ("llama", "qwen2")


def register_model(*architectures: str) -> Callable[[ModelT], ModelT]:
    def wrap(cls: ModelT) -> ModelT:
        for arch in architectures:
            _REGISTRY[arch] = cls
        return cls

    return wrap


def _import_builtins() -> None:
    for name in _BUILTIN_MODULES:
        importlib.import_module(f"sglang.runtime.models.{name}")


def supported_architectures() -> list[str]:
    _import_builtins()
    return sorted(_REGISTRY)


def get_model_class(arch: str) -> type[nn.Module]:
    _import_builtins()
    if arch not in _REGISTRY:
        raise ValueError(
            f"model architecture {arch!r} is not supported; supported: {sorted(_REGISTRY)}"
        )
    return _REGISTRY[arch]


def model_class_for_config(config: Any) -> type[nn.Module]:
    archs = getattr(config, "architectures", None) or []
    for arch in archs:
        if arch in supported_architectures():
            return _REGISTRY[arch]
    if not archs:
        raise ValueError("the model config names no `architectures`; cannot pick a model class")
    return get_model_class(archs[0])
