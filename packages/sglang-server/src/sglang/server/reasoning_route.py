"""`POST /separate_reasoning`: the native API's reasoning split (SGLang's route of that name).

A client of `/generate` gets the raw text, thinking included; this route splits such a text with
the server's `--reasoning-parser` or the one the body names.
"""

from __future__ import annotations

from typing import Any

import msgspec
from fastapi import APIRouter, Request
from starlette.responses import Response

from sglang.protocol.reasoning import SeparateReasoningReqInput, reasoning_format, split_reasoning
from sglang.server.errors import bad_request
from sglang.server.http_guard import json_body_openapi, json_response


def build_reasoning_router(server_args: Any) -> APIRouter:
    router = APIRouter()

    @router.post("/separate_reasoning", openapi_extra=json_body_openapi(
        SeparateReasoningReqInput,
        example={"text": "<think>\n2+2 is 4.\n</think>\n\n4", "reasoning_parser": "qwen3"}))
    async def separate_reasoning(request: Request) -> Response:
        try:
            body = msgspec.json.decode(await request.body(), type=SeparateReasoningReqInput)
        except (msgspec.ValidationError, msgspec.DecodeError) as e:
            raise bad_request(f"invalid request body: {e}", None) from e
        name = body.reasoning_parser or server_args.reasoning_parser
        if name is None:
            raise bad_request("no reasoning parser: name one in reasoning_parser or start the "
                              "server with --reasoning-parser", "reasoning_parser")
        try:
            fmt = reasoning_format(name)
        except ValueError as e:
            raise bad_request(str(e), "reasoning_parser") from e
        reasoning, content = split_reasoning(body.text, fmt)
        return json_response({"text": content, "reasoning_text": reasoning or ""})

    return router
