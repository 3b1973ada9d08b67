"""HTTP plumbing shared by every route: the API-key / draining / body-size guard and the
exception handlers that turn every failure into an OpenAI-style error body (bad input is always
a 4xx)."""

from __future__ import annotations

import hmac
import logging
from typing import Any

import msgspec
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from sglang.server.errors import APIError, error_body

logger = logging.getLogger("sglang.server")

# Always answered: load balancers probe it without credentials, and it reports draining itself.
OPEN_PATHS = frozenset({"/health"})


def json_body_openapi(type_: Any, example: dict[str, Any] | None = None) -> dict[str, Any]:
    """`openapi_extra` documenting a route's JSON body with the msgspec type it is decoded into.

    The routes read raw bodies (msgspec is faster than pydantic and names the bad field), so
    FastAPI can't describe them itself; without a body schema, /openapi.json is of no use to
    clients or fuzzers. msgspec's `#/$defs/...` refs don't resolve inside an OpenAPI document,
    so they are inlined (the request types are not recursive).
    """
    schema = msgspec.json.schema(type_)
    defs: dict[str, Any] = schema.pop("$defs", {})

    def inline(node: Any, seen: tuple[str, ...]) -> Any:
        if isinstance(node, list):
            return [inline(x, seen) for x in node]
        if not isinstance(node, dict):
            return node
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            name = ref[len("#/$defs/"):]
            if name in seen:
                raise ValueError(f"recursive request type {name} can't be inlined")
            return inline(defs[name], (*seen, name))
        return {k: inline(v, seen) for k, v in node.items()}

    media: dict[str, Any] = {"schema": inline(schema, ())}
    if example is not None:
        media["example"] = example
    return {"requestBody": {"required": True, "content": {"application/json": media}}}


def json_response(content: Any, status: int = 200) -> Response:
    # msgspec: fast, encodes tuples, and writes non-finite floats (a -inf logprob) as null
    # instead of failing the response.
    return Response(msgspec.json.encode(content), status, media_type="application/json")


def error_response(e: APIError) -> Response:
    headers = {"WWW-Authenticate": "Bearer"} if e.status == 401 else None
    resp = json_response(e.body(), e.status)
    if headers:
        resp.headers.update(headers)
    return resp


def body_too_large(limit: int) -> APIError:
    return APIError(f"the request body is larger than {limit} bytes (--max-request-bytes)",
                    413, code="request_too_large")


def _content_length(scope: dict) -> int | None:
    raw = dict(scope.get("headers") or []).get(b"content-length")
    try:
        return int(raw) if raw is not None else None
    except ValueError:  # the HTTP server refuses a malformed one before we see it
        return None


def limited_receive(receive: Any, limit: int) -> Any:
    """`receive` that counts body bytes and raises 413 past `limit`: a chunked or lying body is
    stopped while it is read, before it is buffered whole or decoded."""
    seen = 0

    async def wrapped() -> dict:
        nonlocal seen
        message: dict = await receive()
        if message.get("type") == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise body_too_large(limit)
        return message

    return wrapped


class GuardMiddleware:
    """Pure ASGI (a BaseHTTPMiddleware would get in the way of streaming and disconnect
    detection): checks the API key, refuses new requests with 503 while draining, and bodies
    over `max_request_bytes` with 413 (from Content-Length, and again while reading)."""

    def __init__(self, app: Any, tm: Any, api_key: str | None,
                 max_request_bytes: int | None = None) -> None:
        self.app = app
        self.tm = tm
        self.expected = f"Bearer {api_key}".encode() if api_key else None
        self.max_bytes = max_request_bytes

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        if self.expected is not None:
            given = dict(scope.get("headers") or []).get(b"authorization", b"")
            if not hmac.compare_digest(given, self.expected):
                err = APIError("invalid or missing API key: send 'Authorization: Bearer <key>'",
                               401, "authentication_error", code="invalid_api_key")
                await error_response(err)(scope, receive, send)
                return
        if self.tm.draining:
            err = APIError("the server is shutting down", 503, "server_error")
            await error_response(err)(scope, receive, send)
            return
        if self.max_bytes is not None:
            length = _content_length(scope)
            if length is not None and length > self.max_bytes:
                await error_response(body_too_large(self.max_bytes))(scope, receive, send)
                return
            receive = limited_receive(receive, self.max_bytes)
        await self.app(scope, receive, send)


def _validation_message(exc: RequestValidationError) -> tuple[str, str | None]:
    errors = exc.errors()
    if not errors:
        return "invalid request", None
    first = errors[0]
    loc = [str(x) for x in first.get("loc", ()) if x != "body"]
    param = ".".join(loc) or None
    return f"invalid request: {first.get('msg', 'invalid value')}" + (
        f" (at {param})" if param else ""), param


def install_exception_handlers(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def _api_error(request: Request, exc: APIError) -> Response:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> Response:
        message, param = _validation_message(exc)
        return error_response(APIError(message, 400, param=param))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        kind = "invalid_request_error" if exc.status_code < 500 else "server_error"
        return json_response(error_body(str(exc.detail), kind, None, exc.status_code),
                             exc.status_code)

    @app.exception_handler(RecursionError)
    async def _too_deep(request: Request, exc: RecursionError) -> Response:
        # Only input nests this deep (the depth check before decoding should catch it first).
        return error_response(APIError("the request is nested too deeply", 400))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        logger.exception("unhandled error in %s %s", request.method, request.url.path)
        return json_response(
            error_body(f"internal error: {type(exc).__name__}: {exc}", "server_error", None, 500),
            500,
        )
