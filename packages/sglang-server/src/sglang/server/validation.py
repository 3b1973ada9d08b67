"""HTTP-side request checks: body decoding with 400s that name the field, and the front door
(runtime/inputs.py) with its `InvalidRequest` turned into a 400 carrying the same `param`
(unreadable media included: `image_data` / `video_data`)."""

from __future__ import annotations

import re
from typing import Any

import msgspec

from sglang.protocol.errors import InvalidRequest
from sglang.protocol.generate import GenerateReqInput
from sglang.runtime.inputs import ModelLimits, PreparedRequest, ProcessorSource, prepare_request
from sglang.server.errors import APIError, bad_request

_JSON_PATH_RE = re.compile(r"`\$\.([A-Za-z_][A-Za-z0-9_]*)")


def api_error(e: InvalidRequest) -> APIError:
    return APIError(str(e), 400, "invalid_request_error", e.param, getattr(e, "code", None))


def decode_body(body: bytes, type_: Any) -> Any:
    """msgspec-decode a JSON body; malformed JSON and wrong types become 400s naming the path."""
    if not body.strip():
        raise bad_request("the request body is empty; send a JSON object")
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
    """`prepare_request`, with its errors as 400s. Blocking (tokenization, media loading and
    decoding): the server runs it off its event loop."""
    try:
        return prepare_request(obj, tokenizer, limits, processor)
    except InvalidRequest as e:
        raise api_error(e) from e
