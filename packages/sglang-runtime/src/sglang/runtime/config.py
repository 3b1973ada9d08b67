"""RuntimeArgs: every knob of the runtime, with defaults and validation."""

from __future__ import annotations

import logging
from typing import Any

import msgspec

SCHEDULE_POLICIES = ("lpm", "fcfs")
DTYPES = ("auto", "float32", "float16", "bfloat16", "half", "float", "bf16", "fp16", "fp32")
LOAD_FORMATS = ("auto", "gguf", "safetensors", "hf", "dummy")


class RuntimeArgs(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    model_path: str | None = None
    tokenizer_path: str | None = None
    load_format: str = "auto"
    dtype: str = "auto"
    device: str = "auto"
    # Fraction of device memory for weights + KV pool (CUDA). On CPU, of free host memory for KV.
    mem_fraction_static: float = 0.85
    max_total_tokens: int | None = None
    context_length: int | None = None
    max_running_requests: int | None = None
    schedule_policy: str = "lpm"
    disable_radix_cache: bool = False
    chunked_prefill_size: int | None = None
    max_prefill_tokens: int = 16384
    attention_backend: str = "auto"
    random_seed: int = 0
    log_level: str = "warning"
    # Admission assumes each running request still emits this share of its max_new_tokens; it
    # decays towards the minimum while decoding goes well and resets after a retraction.
    init_new_token_ratio: float = 0.7
    min_new_token_ratio: float = 0.1
    new_token_ratio_decay: float = 0.001
    # Check the KV accounting invariant after every step (tests); it always runs when idle.
    debug_check_integrity: bool = False

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        def bad(field: str, value: Any, allowed: str) -> ValueError:
            return ValueError(f"invalid {field}={value!r}: expected {allowed}")

        if not 0.0 < self.mem_fraction_static <= 1.0:
            raise bad("mem_fraction_static", self.mem_fraction_static, "a number in (0, 1]")
        if self.schedule_policy not in SCHEDULE_POLICIES:
            raise bad("schedule_policy", self.schedule_policy, f"one of {SCHEDULE_POLICIES}")
        if self.dtype not in DTYPES:
            raise bad("dtype", self.dtype, f"one of {DTYPES}")
        if self.load_format not in LOAD_FORMATS:
            raise bad("load_format", self.load_format, f"one of {LOAD_FORMATS}")
        for name in ("max_total_tokens", "context_length", "max_running_requests",
                     "chunked_prefill_size"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise bad(name, value, "a positive integer")
        if self.max_prefill_tokens < 1:
            raise bad("max_prefill_tokens", self.max_prefill_tokens, "a positive integer")
        if self.log_level.upper() not in logging.getLevelNamesMapping():
            raise bad("log_level", self.log_level, "a logging level name")

    @classmethod
    def from_kwargs(cls, **kwargs: Any) -> RuntimeArgs:
        try:
            return msgspec.convert(kwargs, cls)
        except msgspec.ValidationError as e:
            raise ValueError(f"invalid runtime argument: {e}") from e

    def to_dict(self) -> dict[str, Any]:
        return msgspec.structs.asdict(self)
