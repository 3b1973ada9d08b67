"""Model classes keyed by the HF `architectures` names they implement.

The classes live in `plugins.MODELS` (entry-point group "sglang.models", one entry per
architecture name); the functions here are the lookups the loader needs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from torch import nn

from sglang.runtime.plugins import MODELS

ModelT = TypeVar("ModelT", bound=type[nn.Module])


def register_model(*architectures: str) -> Callable[[ModelT], ModelT]:
    """Register a class in this process under each architecture name (tests, scripts); a
    distribution declares entry points instead, which spawned processes find too."""

    def wrap(cls: ModelT) -> ModelT:
        for arch in architectures:
            MODELS.register(arch, cls)
        return cls

    return wrap


def supported_architectures() -> list[str]:
    return list(MODELS.names())


def get_model_class(arch: str) -> type[nn.Module]:
    cls: type[nn.Module] = MODELS.get(arch)
    return cls


def model_class_for_config(config: Any) -> type[nn.Module]:
    """The class of the first of the config's `architectures` that is registered."""
    archs = getattr(config, "architectures", None) or []
    if not archs:
        raise ValueError("the model config names no `architectures`; cannot pick a model class")
    known = MODELS.names()
    return get_model_class(next((a for a in archs if a in known), archs[0]))
