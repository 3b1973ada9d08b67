"""OpenAI request bodies (msgspec) and small response builders.

Request structs ignore unknown fields (`forbid_unknown_fields=False`) because OpenAI clients send
fields we have no use for (`user`, `metadata`, `store`, ...). Fields whose meaning we cannot
honour (`suffix`, `logit_bias`, `tools`, non-text content) are declared so they can be rejected
with a 400 instead of silently changing the answer.

Responses are plain dicts: they are built once per request or chunk and encoded straight away.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import msgspec

MAX_N = 128  # OpenAI's own cap on `n`
MAX_TOP_LOGPROBS = 20  # OpenAI's cap on `logprobs` (completions) / `top_logprobs` (chat)


class StreamOptions(msgspec.Struct, forbid_unknown_fields=False):
    include_usage: bool = False


class _SamplingFields(msgspec.Struct, kw_only=True, forbid_unknown_fields=False):
    """Fields shared by both endpoints; SGLang extras after the OpenAI ones."""

    model: str | None = None  # any name is accepted: one model is served
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    n: int = 1
    stop: str | list[str] | None = None
    seed: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    logit_bias: dict[str, float] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = None
    # SGLang extensions
    top_k: int | None = None
    min_p: float | None = None
    repetition_penalty: float | None = None
    min_tokens: int | None = None
    ignore_eos: bool | None = None
    stop_token_ids: list[int] | None = None
    skip_special_tokens: bool | None = None
    spaces_between_special_tokens: bool | None = None
    no_stop_trim: bool | None = None
    regex: str | None = None
    json_schema: str | None = None
    ebnf: str | None = None
    rid: str | None = None

    @property
    def include_usage(self) -> bool:
        return self.stream and self.stream_options is not None and self.stream_options.include_usage


class CompletionRequest(_SamplingFields, kw_only=True, forbid_unknown_fields=False):
    # str | list[str] | list[int] | list[list[int]]: msgspec can't express a union of list
    # types, so the shape is checked by `completions.normalize_prompts`.
    prompt: Any
    echo: bool = False
    logprobs: int | None = None
    best_of: int | None = None
    suffix: str | None = None


class ContentPart(msgspec.Struct, kw_only=True, forbid_unknown_fields=False):
    type: str
    text: str | None = None


class ChatMessage(msgspec.Struct, kw_only=True, forbid_unknown_fields=False):
    role: str
    content: str | list[ContentPart] | None = None
    name: str | None = None


class JSONSchemaFormat(msgspec.Struct, kw_only=True, forbid_unknown_fields=False):
    name: str | None = None
    schema: dict[str, Any] | bool | None = None
    strict: bool | None = None


class ResponseFormat(msgspec.Struct, kw_only=True, forbid_unknown_fields=False):
    type: str
    json_schema: JSONSchemaFormat | None = None


class ChatCompletionRequest(_SamplingFields, kw_only=True, forbid_unknown_fields=False):
    messages: list[ChatMessage]
    max_completion_tokens: int | None = None
    logprobs: bool = False
    top_logprobs: int | None = None
    response_format: ResponseFormat | None = None
    tools: list[Any] | None = None
    tool_choice: Any = None


# ---- response builders --------------------------------------------------------------------


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


def now() -> int:
    return int(time.time())


def usage_dict(prompt_tokens: int, completion_tokens: int, cached_tokens: int) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": cached_tokens},
    }


def model_card(model_id: str, context_len: int, created: int) -> dict[str, Any]:
    return {
        "id": model_id, "object": "model", "created": created, "owned_by": "sglang",
        "root": model_id, "max_model_len": context_len,
    }
