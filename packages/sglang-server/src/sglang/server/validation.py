"""HTTP-side request checks: body decoding with 400s that name the field, and the front door
(runtime/inputs.py) with its `InvalidRequest` turned into a 400 carrying the same `param`
(unreadable media included: `image_data` / `video_data`)."""

from __future__ import annotations

import operator
import re
from itertools import accumulate, count
from typing import Any

import msgspec

from sglang.protocol.errors import InvalidRequest
from sglang.protocol.generate import GenerateReqInput
from sglang.runtime.inputs import (
    ModelLimits,
    PreparedRequest,
    ProcessorSource,
    check_limits,
    prepare_request,
)
from sglang.server.errors import APIError, bad_request

_JSON_PATH_RE = re.compile(r"`\$\.([A-Za-z_][A-Za-z0-9_]*)")

# Deepest JSON nesting a request may have. Real requests stay under ~10 (a batch of token id
# lists is 2; a JSON schema rarely passes 20); past ~1,000 recursive consumers (json.dumps, schema
# compilers) raise RecursionError.
MAX_JSON_DEPTH = 128
# A JSON string, escapes included; an unterminated one runs to the end, so the scan stays linear.
_STRING_RE = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*(?:"|\Z)', re.S)
_OPENERS, _CLOSERS = b"[{", b"]}"
# Openers become 2 and closers 0, so a running sum minus the position is the depth.
_DEPTH_TABLE = bytes.maketrans(_OPENERS + _CLOSERS, b"\x02\x02\x00\x00")
_NOT_BRACKETS = bytes(b for b in range(256) if b not in _OPENERS + _CLOSERS)


def json_depth(body: bytes) -> int:
    """The deepest nesting of arrays/objects in a JSON text, ignoring brackets inside strings.
    Iterative and in C-speed steps (a recursive parser is what this protects)."""
    brackets = _STRING_RE.sub(b"", body).translate(_DEPTH_TABLE, delete=_NOT_BRACKETS)
    if not brackets:
        return 0
    steps = accumulate(brackets)
    return max(0, max(map(operator.sub, steps, count(1))))


def check_json_depth(body: bytes | str, limit: int = MAX_JSON_DEPTH) -> None:
    """400 for JSON nested deeper than `limit`, before anything recursive decodes it."""
    raw = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else body
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return  # too few openers to be too deep: skip the scan (the usual case)
    depth = json_depth(raw)
    if depth > limit:
        raise bad_request(f"the request nests arrays/objects {depth} deep; at most {limit} "
                          "levels are allowed")


def api_error(e: InvalidRequest) -> APIError:
    return APIError(str(e), 400, "invalid_request_error", e.param, getattr(e, "code", None))


def decode_body(body: bytes, type_: Any) -> Any:
    """msgspec-decode a JSON body; malformed JSON and wrong types become 400s naming the path."""
    if not body.strip():
        raise bad_request("the request body is empty; send a JSON object")
    check_json_depth(body)
    try:
        return msgspec.json.decode(body, type=type_)
    except msgspec.ValidationError as e:
        m = _JSON_PATH_RE.search(str(e))
        raise bad_request(f"invalid request: {e}", m.group(1) if m else None) from e
    except msgspec.DecodeError as e:
        raise bad_request(f"malformed JSON body: {e}") from e


def decode_generate_body(body: bytes) -> GenerateReqInput:
    """The /generate body, type-checked; exactly-one-of and batch-length checks come later
    (`GenerateReqInput.validate`)."""
    return decode_body(body, GenerateReqInput)


def prepare_http(
    obj: GenerateReqInput,
    tokenizer: Any,
    limits: ModelLimits,
    processor: ProcessorSource | None = None,
) -> PreparedRequest:
    """`prepare_request` under the server's per-request caps (`check_limits`), with its errors
    as 400s. Blocking (tokenization, media loading and decoding): the server runs it off its
    event loop."""
    try:
        check_limits(obj)
        return prepare_request(obj, tokenizer, limits, processor)
    except InvalidRequest as e:
        raise api_error(e) from e
