"""`sgl.global_config`: the frontend's process-wide settings, one object as in SGLang.

`default_backend` holds exactly what was given to `sgl.set_default_backend` (a backend, a
`sgl.Runtime` or an `sgl.Engine`), so `sgl.global_config.default_backend.endpoint` and
`.token_usage` read as they do upstream; programs unwrap it when they run
(`sglang.lang.program.resolve_backend`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class GlobalConfig:
    default_backend: Any = None
    # run_batch sends the constant prefix every run shares to the backend before the runs.
    enable_precache_with_tracing: bool = True
    # fork() asks the backend to cache the text so far, so the branches share its KV cache.
    enable_parallel_encoding: bool = True


global_config = GlobalConfig()

__all__ = ["GlobalConfig", "global_config"]
