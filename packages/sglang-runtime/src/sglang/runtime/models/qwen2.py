"""Qwen2: the Llama architecture with biases on the q/k/v projections."""

from __future__ import annotations

from typing import Any, ClassVar

from sglang.runtime.models.llama import LlamaForCausalLM


class Qwen2ForCausalLM(LlamaForCausalLM):
    qkv_bias: ClassVar[bool] = True

    @staticmethod
    def _sliding_window(config: Any) -> int | None:
        # Qwen2 configs carry a `sliding_window` size but only use it when asked to, and then
        # only in some layers; the per-layer variant isn't supported yet.
        if getattr(config, "use_sliding_window", False):
            raise NotImplementedError("Qwen2 with use_sliding_window=True is not supported")
        return None
