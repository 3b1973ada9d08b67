"""sglang: a structured-generation language for LLM programs and its serving runtime.

This `__init__` belongs to the sglang-lang distribution. Other distributions (sglang-runtime,
sglang-kernels, sglang-server, sglang-multimodal) add submodules to the `sglang` namespace, so
the package path is extended over every `sglang` folder on sys.path (editable installs too).

The language (`sgl.function`, `sgl.gen`, ...) is pure Python and imported eagerly. Backends and
the Engine are imported on first use: the Engine pulls in torch, the OpenAI backend needs the
`openai` extra.
"""

from __future__ import annotations

from pkgutil import extend_path
from typing import Any

__path__ = extend_path(__path__, __name__)
__version__ = "0.1.0"

from sglang.global_config import global_config  # noqa: E402
from sglang.lang.api import (  # noqa: E402  (after extend_path, so submodules resolve)
    assistant,
    assistant_begin,
    assistant_end,
    flush_cache,
    function,
    gen,
    gen_int,
    gen_string,
    get_server_args,
    image,
    select,
    set_default_backend,
    system,
    system_begin,
    system_end,
    user,
    user_begin,
    user_end,
    video,
)
from sglang.lang.backend.base import TokenUsage  # noqa: E402
from sglang.lang.choices import (  # noqa: E402
    greedy_token_selection,
    token_length_normalized,
    unconditional_likelihood_normalized,
)
from sglang.lang.reasoning import separate_reasoning  # noqa: E402

# name -> (module, what to install when the module is missing)
_LAZY: dict[str, tuple[str, str]] = {
    "Engine": (
        "sglang.runtime.engine",
        "sgl.Engine needs the runtime: install packages/sglang-runtime from a checkout (README)",
    ),
    "Runtime": ("sglang.lang.runtime", "sgl.Runtime is not available in this installation"),
    "RuntimeEndpoint": (
        "sglang.lang.backend.runtime_endpoint",
        "sgl.RuntimeEndpoint is not available in this installation",
    ),
    "OpenAI": ("sglang.lang.backend.openai", "sgl.OpenAI needs: pip install 'sglang-lang[openai]'"),
    "EngineBackend": (
        "sglang.lang.backend.engine", "sgl.EngineBackend is not available in this installation",
    ),
}

# Lazy names stay out of __all__ so `from sglang import *` never needs torch or openai.
__all__ = [
    "assistant", "assistant_begin", "assistant_end", "flush_cache", "function", "gen",
    "gen_int", "gen_string", "get_server_args", "image", "select", "separate_reasoning",
    "set_default_backend",
    "system", "system_begin", "system_end", "user", "user_begin", "user_end", "video",
    "global_config", "TokenUsage", "token_length_normalized", "greedy_token_selection",
    "unconditional_likelihood_normalized",
]  # fmt: skip


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'sglang' has no attribute {name!r}")
    module_name, hint = _LAZY[name]
    import importlib

    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ImportError(hint) from e
    return getattr(module, name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
