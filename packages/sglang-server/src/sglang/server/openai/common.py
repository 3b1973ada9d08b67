"""Pieces shared by the completions and chat endpoints: body decoding with 400s that name the
field, OpenAI → SGLang sampling params, finish reasons and usage (generations are folded by
sglang.runtime.result, the one accumulator)."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol, TypeVar

import msgspec
from fastapi import Request

from sglang.protocol.errors import InvalidRequest
from sglang.protocol.generate import GenerateReqInput
from sglang.protocol.sampling_params import check_logit_bias, check_stop_regex
from sglang.runtime.inputs import PreparedRequest, check_rid
from sglang.runtime.messages import TokenizedGenerateReq
from sglang.runtime.result import ResultAccumulator, ResultStep
from sglang.server.errors import APIError, bad_request
from sglang.server.openai.protocol import MAX_N, _SamplingFields
from sglang.server.validation import check_json_depth

T = TypeVar("T")
LogprobEntry = tuple[float | None, int, str | None]  # (logprob, token id, token text)


class TokenizerManagerLike(Protocol):
    tokenizer: Any
    context_len: int
    served_model_name: str
    chat_template: Any  # ChatTemplate | None

    async def prepare(self, obj: GenerateReqInput) -> PreparedRequest: ...

    def stream(
        self, obj: GenerateReqInput, request: Request | None = None,
        prepared: TokenizedGenerateReq | None = None,
    ) -> AsyncIterator[ResultStep]: ...


# ---- request decoding ---------------------------------------------------------------------

_AT_RE = re.compile(r"at `\$\.?([^`]*)`")
_MISSING_RE = re.compile(r"missing required field `([^`]*)`")
_UNKNOWN_RE = re.compile(r"unknown field `([^`]*)`")


def _param_of(message: str) -> str | None:
    at = _AT_RE.search(message)
    path = at.group(1) if at else ""
    missing = _MISSING_RE.search(message)
    if missing:
        path = f"{path}.{missing.group(1)}" if path else missing.group(1)
    return path or None


def decode_request(body: bytes, type_: type[T]) -> T:
    if not body.strip():
        raise bad_request("the request body is empty; expected a JSON object")
    check_json_depth(body)
    try:
        return msgspec.json.decode(body, type=type_)
    except msgspec.ValidationError as e:  # a subclass of DecodeError: must come first
        unknown = _UNKNOWN_RE.search(str(e))
        if unknown:  # the one policy for fields we do not declare (see protocol.py)
            where = _param_of(str(e))
            param = f"{where}.{unknown.group(1)}" if where else unknown.group(1)
            raise bad_request(f"unsupported field {param!r}: this server cannot honour it",
                              param) from e
        raise bad_request(f"invalid request: {e}", _param_of(str(e))) from e
    except msgspec.DecodeError as e:
        raise bad_request(f"malformed JSON body: {e}") from e


# Front-door names (sglang.runtime.inputs, SamplingParams) whose OpenAI spelling differs, per
# route; any other `sampling_params.x` is `x` on both. An error naming `sampling_params.top_p`
# or `input_ids` would send an OpenAI client looking for a field it never sent.
OPENAI_PARAMS: dict[str, dict[str, str]] = {
    "completions": {
        "sampling_params.max_new_tokens": "max_tokens",
        "sampling_params.min_new_tokens": "min_tokens",
        "top_logprobs_num": "logprobs", "input_ids": "prompt", "text": "prompt",
    },
    "chat": {
        "sampling_params.max_new_tokens": "max_tokens",
        "sampling_params.min_new_tokens": "min_tokens",
        "top_logprobs_num": "top_logprobs", "input_ids": "messages", "text": "messages",
        # Media come from content parts of the messages.
        "image_data": "messages", "video_data": "messages",
    },
}
_PREFIX = "sampling_params."


def openai_param(param: str | None, route: str, overrides: dict[str, str] | None = None
                 ) -> str | None:
    """The OpenAI request's name for a front-door `param`."""
    if param is None:
        return None
    table = {**OPENAI_PARAMS[route], **(overrides or {})}
    if param in table:
        return table[param]
    return param[len(_PREFIX):] if param.startswith(_PREFIX) else param


@contextmanager
def openai_names(route: str, overrides: dict[str, str] | None = None) -> Iterator[None]:
    """Errors raised inside (the front door's) name the OpenAI fields, in `param` and text."""
    try:
        yield
    except APIError as e:
        new = openai_param(e.param, route, overrides)
        if new == e.param or e.param is None or new is None:
            raise
        message = e.message
        old_leaf = e.param.rsplit(".", 1)[-1]
        if old_leaf != new:
            message = re.sub(rf"\b{re.escape(old_leaf)}\b", new, message)
        raise APIError(message, e.status, e.type, new, e.code) from e


@contextmanager
def native_errors() -> Iterator[None]:
    """The shared validators' InvalidRequest as a 400 naming the same field."""
    try:
        yield
    except InvalidRequest as e:
        raise bad_request(str(e), e.param) from e


def check_common(req: _SamplingFields) -> None:
    """Checks whose OpenAI name differs from the runtime's (so its error would confuse), and
    fields we refuse rather than ignore."""
    if not 1 <= req.n <= MAX_N:
        raise bad_request(f"n must be in [1, {MAX_N}], got {req.n}", "n")
    if req.rid is not None:
        try:
            check_rid(req.rid)
        except InvalidRequest as e:
            raise bad_request(str(e), "rid") from e
    with native_errors():
        if req.logit_bias:
            check_logit_bias(req.logit_bias, None)  # ids past the vocabulary: the front door
        if req.custom_params is not None:
            raise InvalidRequest("custom_params is not supported: this server runs no custom "
                                 "logit processors", "custom_params")
        for pattern in [req.stop_regex] if isinstance(req.stop_regex, str) \
                else req.stop_regex or []:
            check_stop_regex(pattern)
    if req.min_tokens is not None and req.min_tokens < 0:
        raise bad_request(f"min_tokens must be >= 0, got {req.min_tokens}", "min_tokens")


def sampling_params(
    req: _SamplingFields,
    max_new_tokens: int | None,
    extra_stop: Iterable[str] = (),
    extra_stop_ids: Iterable[int] = (),
) -> dict[str, Any]:
    """The SGLang sampling params for one generation (`n` and `seed` are set per copy)."""
    stop = [req.stop] if isinstance(req.stop, str) else list(req.stop or [])
    stop += [s for s in extra_stop if s not in stop]
    stop_ids = list(req.stop_token_ids or [])
    stop_ids += [t for t in extra_stop_ids if t not in stop_ids]
    values = {
        "max_new_tokens": max_new_tokens, "min_new_tokens": req.min_tokens,
        "temperature": req.temperature, "top_p": req.top_p, "top_k": req.top_k,
        "min_p": req.min_p, "frequency_penalty": req.frequency_penalty,
        "presence_penalty": req.presence_penalty, "repetition_penalty": req.repetition_penalty,
        "stop": stop or None, "stop_token_ids": stop_ids or None, "ignore_eos": req.ignore_eos,
        "skip_special_tokens": req.skip_special_tokens,
        "spaces_between_special_tokens": req.spaces_between_special_tokens,
        "no_stop_trim": req.no_stop_trim, "regex": req.regex, "json_schema": req.json_schema,
        "ebnf": req.ebnf, "logit_bias": req.logit_bias or None, "stop_regex": req.stop_regex,
        "sampling_seed": req.sampling_seed,
    }
    # Unset values are left out so the runtime's own defaults apply.
    return {k: v for k, v in values.items() if v is not None}


def response_format_schema(req: Any) -> str | None:
    """The JSON schema (as a string) that `response_format` asks for, or None for text.
    `json_object` is any JSON object; `json_schema` carries its schema under json_schema.schema."""
    rf = getattr(req, "response_format", None)
    if rf is None or rf.type == "text":
        return None
    if rf.type == "json_object":
        schema: Any = {"type": "object"}
    elif rf.type == "json_schema":
        if rf.json_schema is None or rf.json_schema.schema is None:
            raise bad_request("response_format json_schema needs json_schema.schema",
                              "response_format.json_schema")
        schema = rf.json_schema.schema
    else:
        raise bad_request(
            f"response_format type must be text, json_object or json_schema, got {rf.type!r}",
            "response_format.type",
        )
    if req.json_schema is not None or req.regex is not None or req.ebnf is not None:
        raise bad_request("give either response_format or regex/json_schema/ebnf, not both",
                          "response_format")
    return json.dumps(schema)


def with_copies(params: dict[str, Any], n: int, seed: int | None) -> dict[str, Any]:
    """`n` and `seed` for the front door, which fans out the copies (copy i gets seed + i:
    reproducible, yet the n samples differ). Left out when unset, as the other params."""
    extra = {"n": n} if n != 1 else {}
    if seed is not None:
        extra["seed"] = seed
    return {**params, **extra}


def token_text(entry: LogprobEntry, tokenizer: Any) -> str:
    text = entry[2]
    return text if text is not None else tokenizer.decode([entry[1]])


def finish_reason(step: ResultStep) -> str | None:
    """OpenAI's finish_reason for a step: "stop" / "length", or "abort" (an error)."""
    return None if step.finish_reason is None else step.finish_reason.type


def abort_error(step: ResultStep) -> APIError:
    fr = step.finish_reason
    status = (fr.status_code if fr is not None else None) or 500
    kind = "server_error" if status >= 500 else "invalid_request_error"
    message = fr.message if fr is not None and fr.message else "the request was aborted"
    return APIError(message, status, kind)


def usage_totals(gens: list[ResultAccumulator], n: int) -> tuple[int, int, int]:
    """(prompt, completion, cached) tokens. Copies of one prompt count its tokens once; their
    cached count is the smallest, i.e. what the copy that did the most work found cached."""
    prompt = completion = cached = 0
    for start in range(0, len(gens), n):
        group = gens[start:start + n]
        prompt += group[0].prompt_tokens
        cached += min(g.cached_tokens for g in group)
        completion += sum(g.completion_tokens for g in group)
    return prompt, completion, cached
