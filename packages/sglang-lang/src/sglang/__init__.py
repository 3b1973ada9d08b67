"""sglang: a structured-generation language for LLM programs and its serving runtime.

This `__init__` belongs to the sglang-lang distribution. Other distributions (sglang-runtime,
sglang-kernels, sglang-server, sglang-multimodal) add submodules to the `sglang` namespace, so
the package path is extended over every `sglang` folder on sys.path (editable installs too).
"""

from __future__ import annotations

from pkgutil import extend_path
from typing import Any

__path__ = extend_path(__path__, __name__)
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # The runtime pulls in torch; import it only when a user asks for the Engine.
    if name == "Engine":
        try:
            from sglang.runtime.engine import Engine
        except ImportError as e:
            raise ImportError(
                "sgl.Engine needs the runtime: pip install sglang-runtime"
            ) from e
        return Engine
    raise AttributeError(f"module 'sglang' has no attribute {name!r}")
