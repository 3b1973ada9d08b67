"""OpenAI request bodies (msgspec) and small response builders.

Unknown fields: every request struct refuses a field it does not declare (`forbid_unknown_fields`;
`common.decode_request` answers "unsupported field 'x'" with a 400 naming it), so nothing a client
asks for is silently dropped. What a struct declares is what we accept: a field another module
adds to a struct is accepted with no other change. The few fields OpenAI clients send that
change nothing we compute are declared from one table, `IGNORED_FIELDS`, and documented as
accepted and ignored. Fields whose meaning we cannot honour (`suffix`, `tools` on models without
tool support) are declared so they can be rejected with a message saying why.

Responses are plain dicts: they are built once per request or chunk and encoded straight away.

Value ranges are checked in code (with messages naming the OpenAI field), so the annotations
below only document them in the JSON schema (`/openapi.json`): `msgspec.Meta(extra_json_schema=)`
leaves decoding unchanged.
"""

from __future__ import annotations

import time
import uuid
from typing import Annotated, Any

import msgspec

# OpenAI's caps on `n` and on `logprobs` / `top_logprobs`: the front door's, one source of truth.
from sglang.runtime.inputs import MAX_N, MAX_TOP_LOGPROBS


def _doc(**schema: Any) -> msgspec.Meta:
    return msgspec.Meta(extra_json_schema=schema)


_Stop = Annotated[str, _doc(minLength=1)]
_TokenId = Annotated[int, _doc(minimum=0)]
_TopLogprobs = Annotated[int, _doc(minimum=0, maximum=MAX_TOP_LOGPROBS)]
# str | list[str] | list[int] | list[list[int]] (see `completions.normalize_prompts`).
_PROMPT_SCHEMA = {"anyOf": [
    {"type": "string"},
    {"type": "array", "minItems": 1, "items": {"type": "string"}},
    {"type": "array", "minItems": 1, "items": {"type": "integer", "minimum": 0}},
    {"type": "array", "minItems": 1,
     "items": {"type": "array", "minItems": 1, "items": {"type": "integer", "minimum": 0}}},
]}


# Accepted and ignored, per struct: (type, why it changes nothing). A `None` type takes only
# null: clients that echo a previous response's message back send these as null, and any
# other value asks for something we cannot honour (a 400 naming it).
IGNORED_FIELDS: dict[str, dict[str, tuple[Any, str]]] = {
    "request": {
        "user": (str | None, "an end-user id for the provider's abuse monitoring"),
        "metadata": (dict[str, Any] | None, "tags for the provider's dashboards"),
        "store": (bool | None, "whether the provider keeps the completion: we keep nothing"),
        "service_tier": (str | None, "the provider's billing tier"),
    },
    "message": {
        "refusal": (str | None, "a refusal echoed back in the history (the content says it)"),
        "annotations": (list[Any] | None, "URL citations echoed back in the history"),
        "audio": (None, "audio output (only null)"),
        "function_call": (None, "the deprecated function call (only null)"),
    },
}


def _ignored(name: str, table: str) -> type[msgspec.Struct]:
    """A base struct declaring the ignored fields of `table`, all defaulting to None."""
    fields = [(f, t, None) for f, (t, _) in IGNORED_FIELDS[table].items()]
    return msgspec.defstruct(name, fields, kw_only=True, forbid_unknown_fields=True)


_IgnoredRequestFields: Any = _ignored("_IgnoredRequestFields", "request")
_IgnoredMessageFields: Any = _ignored("_IgnoredMessageFields", "message")


class StreamOptions(msgspec.Struct, forbid_unknown_fields=True):
    include_usage: bool = False
    # Usage (so far) on every chunk, not only in the last one (vLLM's and SGLang's extension).
    continuous_usage_stats: bool = False


class _SamplingFields(_IgnoredRequestFields, kw_only=True, forbid_unknown_fields=True):
    """Fields shared by both endpoints; SGLang extras after the OpenAI ones."""

    model: str | None = None  # any name is accepted: one model is served
    max_tokens: Annotated[int, _doc(minimum=0)] | None = None
    temperature: Annotated[float, _doc(minimum=0)] | None = None
    top_p: Annotated[float, _doc(exclusiveMinimum=0, maximum=1)] | None = None
    n: Annotated[int, _doc(minimum=1, maximum=MAX_N)] = 1
    stop: _Stop | list[_Stop] | None = None
    seed: Annotated[int, _doc(minimum=-(2**63), maximum=2**64 - 1)] | None = None
    presence_penalty: Annotated[float, _doc(minimum=-2, maximum=2)] | None = None
    frequency_penalty: Annotated[float, _doc(minimum=-2, maximum=2)] | None = None
    # Token id (a string) -> bias in [-100, 100], added to the logit (SamplingParams.logit_bias).
    logit_bias: dict[str, Annotated[float, _doc(minimum=-100, maximum=100)]] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    # SGLang extensions
    top_k: Annotated[int, _doc(minimum=-1, **{"not": {"const": 0}})] | None = None
    min_p: Annotated[float, _doc(minimum=0, maximum=1)] | None = None
    repetition_penalty: Annotated[float, _doc(exclusiveMinimum=0, maximum=2)] | None = None
    min_tokens: Annotated[int, _doc(minimum=0)] | None = None
    ignore_eos: bool | None = None
    stop_token_ids: list[_TokenId] | None = None
    skip_special_tokens: bool | None = None
    spaces_between_special_tokens: bool | None = None
    no_stop_trim: bool | None = None
    regex: str | None = None
    json_schema: str | None = None
    ebnf: str | None = None
    rid: str | None = None
    # SGLang's native names (SamplingParams); `custom_params` is declared to be refused by name.
    stop_regex: str | list[str] | None = None
    sampling_seed: int | None = None
    custom_params: Any = None

    @property
    def include_usage(self) -> bool:
        return self.stream and self.stream_options is not None and self.stream_options.include_usage

    @property
    def continuous_usage(self) -> bool:
        return (self.stream and self.stream_options is not None
                and self.stream_options.continuous_usage_stats)


class CompletionRequest(_SamplingFields, kw_only=True, forbid_unknown_fields=True):
    # str | list[str] | list[int] | list[list[int]]: msgspec can't express a union of list
    # types, so the shape is checked by `completions.normalize_prompts`.
    prompt: Annotated[Any, _doc(**_PROMPT_SCHEMA)]
    echo: bool = False
    logprobs: _TopLogprobs | None = None
    best_of: int | None = None
    suffix: str | None = None
    response_format: ResponseFormat | None = None


# What an image_url part's `detail` may say; accepted and ignored (the model's processor decides
# the resolution), but validated so a typo is not silently taken.
IMAGE_DETAILS = ("auto", "low", "high")
# Content part types (`chat_media.PART_KINDS` maps each to its handling).
CONTENT_PART_TYPES = ("text", "image_url", "video_url")


class ImageURL(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    url: str  # a data URI, an http(s) URL, or what /generate's image_data takes
    detail: Annotated[str, _doc(enum=list(IMAGE_DETAILS))] | None = None


class VideoURL(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """An extension (OpenAI has no video part): a video and how many frames to sample."""

    url: str
    num_frames: Annotated[int, _doc(minimum=1)] | None = None


class ContentPart(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    type: Annotated[str, _doc(enum=list(CONTENT_PART_TYPES))]
    text: str | None = None
    image_url: ImageURL | str | None = None  # a bare URL string is taken too
    video_url: VideoURL | None = None
    # OpenAI's other part kinds, declared so that such a part is refused by its `type` (a 400
    # saying which types we take) rather than by its payload's field name.
    input_audio: Any = None
    file: Any = None


class FunctionCall(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: str
    arguments: str = "{}"  # JSON text, as OpenAI sends it


class ToolCall(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A call in an assistant message of the history."""

    id: str | None = None
    type: Annotated[str, _doc(enum=["function"])] = "function"
    function: FunctionCall


class ChatMessage(_IgnoredMessageFields, kw_only=True, forbid_unknown_fields=True):
    role: Annotated[str, _doc(enum=["system", "developer", "user", "assistant", "tool"])]
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None  # assistant messages
    tool_call_id: str | None = None  # tool messages: the call they answer
    reasoning_content: str | None = None  # an earlier answer's thinking (reasoning models)


class FunctionDef(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: Annotated[str, _doc(minLength=1)]
    description: str | None = None
    parameters: dict[str, Any] | None = None  # a JSON schema
    strict: bool | None = None


class Tool(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    type: Annotated[str, _doc(enum=["function"])]
    function: FunctionDef


class ToolChoiceFunction(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: str


class NamedToolChoice(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    type: Annotated[str, _doc(enum=["function"])]
    function: ToolChoiceFunction


# tool_choice as a string (see tool_calls.TOOL_CHOICES).
_ToolChoiceMode = Annotated[str, _doc(enum=["none", "auto", "required"])]


class JSONSchemaFormat(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: str | None = None
    description: str | None = None  # for the model's provider; the schema alone constrains
    schema: dict[str, Any] | bool | None = None
    strict: bool | None = None


class ResponseFormat(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    type: Annotated[str, _doc(enum=["text", "json_object", "json_schema"])]
    json_schema: JSONSchemaFormat | None = None


class ChatCompletionRequest(_SamplingFields, kw_only=True, forbid_unknown_fields=True):
    messages: Annotated[list[ChatMessage], _doc(minItems=1)]
    max_completion_tokens: Annotated[int, _doc(minimum=1)] | None = None
    logprobs: bool = False
    top_logprobs: _TopLogprobs | None = None
    response_format: ResponseFormat | None = None
    tools: list[Tool] | None = None
    tool_choice: _ToolChoiceMode | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None
    # OpenAI's output modalities (only text is produced); SGLang's input hints ("image",
    # "multi-images", "video") are accepted too. See chat_media.check_modalities.
    modalities: list[str] | None = None
    # Prompt rendering (template_args.py): Jinja template variables, generation prompt,
    # assistant prefill.
    chat_template_kwargs: dict[str, Any] | None = None
    add_generation_prompt: bool = True
    continue_final_message: bool = False
    # With --reasoning-parser (reasoning.py): split the thinking into reasoning_content;
    # stream it as it comes (false: one delta when it ends).
    separate_reasoning: bool = True
    stream_reasoning: bool = True


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
