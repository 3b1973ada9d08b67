"""The FastAPI app: native routes over a TokenizerManager, plus the OpenAI router when present.

Routes: POST /generate, GET /health, GET /health_generate, GET /get_model_info,
GET /get_server_args, POST /flush_cache, GET /metrics, GET /debug/check_integrity; the utility
routes (utility_routes.py): /encode, /tokenize, /detokenize, /abort_request, /get_server_info;
POST /separate_reasoning (reasoning_route.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import msgspec
from fastapi import APIRouter, FastAPI, Request
from starlette.responses import Response, StreamingResponse

from sglang.protocol.generate import GenerateReqInput
from sglang.protocol.media import processor_media_tokens
from sglang.server.args import ServerArgs
from sglang.server.errors import APIError
from sglang.server.http_guard import (
    GuardMiddleware,
    error_response,
    install_exception_handlers,
    json_body_openapi,
    json_response,
)
from sglang.server.metrics import CONTENT_TYPE
from sglang.server.reasoning_route import build_reasoning_router
from sglang.server.role_format import server_role_format
from sglang.server.tokenizer_manager import TokenizerManager
from sglang.server.utility_routes import build_utility_router
from sglang.server.validation import decode_generate_body

logger = logging.getLogger("sglang.server")

STARTUP_PING_TIMEOUT_S = 60.0
HEALTH_GENERATE_TIMEOUT_S = 60.0
METRICS_STATS_TIMEOUT_S = 5.0


def sse(obj: Any) -> bytes:
    return b"data: " + msgspec.json.encode(obj) + b"\n\n"


SSE_DONE = b"data: [DONE]\n\n"


async def run_to_end(agen: AsyncIterator[dict[str, Any]]) -> dict[str, Any]:
    """Drain one generation; the last chunk, without its "delta", is the result."""
    last: dict[str, Any] = {}
    async for chunk in agen:
        last = chunk
    last.pop("delta", None)
    return last


async def _stream_one(agen: Any, first: dict[str, Any]) -> AsyncIterator[bytes]:
    try:
        yield sse(first)
        async for chunk in agen:
            yield sse(chunk)
    except APIError as e:
        yield sse(e.body())
    finally:
        await agen.aclose()  # early exit (client gone): aborts the request
    yield SSE_DONE


async def _stream_many(gens: list[Any]) -> AsyncIterator[bytes]:
    """Interleave several generations; each chunk carries the "index" of its generation."""
    queue: asyncio.Queue[tuple[int, dict[str, Any] | None]] = asyncio.Queue()

    async def pump(i: int, agen: Any) -> None:
        try:
            async for chunk in agen:
                await queue.put((i, {**chunk, "index": i}))
        except APIError as e:
            await queue.put((i, {**e.body(), "index": i}))
        finally:
            await queue.put((i, None))

    tasks = [asyncio.create_task(pump(i, g)) for i, g in enumerate(gens)]
    try:
        pending = len(tasks)
        while pending:
            _, item = await queue.get()
            if item is None:
                pending -= 1
            else:
                yield sse(item)
        yield SSE_DONE
    finally:
        for t in tasks:
            t.cancel()  # cancelling a pump aborts its request (generate's `finally`)
        await asyncio.gather(*tasks, return_exceptions=True)


def build_native_router(tm: TokenizerManager, server_args: ServerArgs) -> APIRouter:
    router = APIRouter()
    # For the frontend language; computed once (none without a tokenizer).
    chat_template = server_role_format(tm) if tm.tokenizer is not None else None

    @router.post("/generate", openapi_extra=json_body_openapi(GenerateReqInput, example={
        "text": "The capital of France is",
        "sampling_params": {"max_new_tokens": 8, "temperature": 0},
    }))
    async def generate(request: Request) -> Response:
        obj = decode_generate_body(await request.body())
        # Every prompt is validated before any runs: a bad batch is refused whole.
        prepared = [p.msg for p in (await tm.prepare(obj)).reqs]
        if len({p.rid for p in prepared}) < len(prepared):
            raise APIError("'rid' values must be unique within a batch", 400, param="rid")
        many = obj.is_batch or len(prepared) > 1
        gens = [tm.generate(obj, request, p) for p in prepared]
        if obj.stream:
            if many:
                return StreamingResponse(_stream_many(gens), media_type="text/event-stream")
            # Wait for the first chunk so a refusal by the scheduler is still a plain 4xx.
            try:
                first = await gens[0].__anext__()
            except StopAsyncIteration:  # the client left before the first token
                return Response(status_code=204)
            return StreamingResponse(_stream_one(gens[0], first), media_type="text/event-stream")
        if not many:
            return json_response(await run_to_end(gens[0]))
        tasks = [asyncio.ensure_future(run_to_end(g)) for g in gens]
        try:
            results = await asyncio.gather(*tasks)
        except BaseException:
            for t in tasks:  # one failure cancels (and so aborts) the rest
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        return json_response(results)

    @router.get("/health")
    async def health() -> Response:
        if tm.draining:
            return error_response(APIError("the server is shutting down", 503, "server_error"))
        if not tm.is_healthy:
            reason = tm.unhealthy_reason or "the server is starting"
            return error_response(APIError(reason, 503, "server_error"))
        return json_response({"status": "ok"})

    @router.get("/health_generate")
    async def health_generate(request: Request) -> Response:
        """Runs a one-token generation through the whole pipeline."""
        greedy_one = {"max_new_tokens": 1, "temperature": 0.0}
        # Without a tokenizer (skip_tokenizer_init) the probe is a token id.
        probe = GenerateReqInput(text="ping", sampling_params=greedy_one) \
            if tm.tokenizer is not None else GenerateReqInput(input_ids=[0],
                                                              sampling_params=greedy_one)
        try:
            await asyncio.wait_for(run_to_end(tm.generate(probe, request)),
                                   HEALTH_GENERATE_TIMEOUT_S)
        except (asyncio.TimeoutError, APIError) as e:
            message = str(e) or "the generation probe timed out"
            return error_response(APIError(message, 503, "server_error"))
        return json_response({"status": "ok"})

    media_tokens: dict[str, str] = {}

    async def describe_media_tokens() -> None:
        """The frontend's sgl.image / sgl.video write these into the text: the model's own
        tokens, found through its input processor on the first call (none for text-only)."""
        if chat_template is None or media_tokens:
            return
        try:
            processor = await asyncio.to_thread(tm.input_processor)
        except Exception:  # text-only, or no readable config: the defaults stand
            media_tokens["none"] = ""
            return
        media_tokens.update({f"{kind}_token": token
                             for kind, token in processor_media_tokens(processor).items()})

    @router.get("/get_model_info")
    async def get_model_info() -> Response:
        await describe_media_tokens()
        described = None if chat_template is None else {
            **chat_template, **{k: v for k, v in media_tokens.items() if k != "none"}}
        return json_response({
            "model_path": tm.model_path,
            "tokenizer_path": tm.tokenizer_path,
            "is_generation": tm.runtime_info.get("pooling") is None,
            "served_model_name": tm.served_model_name,
            "context_length": tm.context_len,
            "vocab_size": tm.vocab_size,
            "max_total_tokens": tm.runtime_info.get("kv_total_tokens"),
            "device": tm.runtime_info.get("device"),
            "chat_template": described,
        })

    @router.get("/get_server_args")
    async def get_server_args() -> Response:
        return json_response(server_args.redacted())

    @router.post("/flush_cache")
    async def flush_cache() -> Response:
        res = await tm.flush_cache()
        return json_response(msgspec.to_builtins(res), 200 if res.success else 400)

    @router.get("/metrics")
    async def metrics() -> Response:
        # Gauges come from the scheduler at scrape time; a busy or dead scheduler leaves them
        # at their last values rather than failing the scrape.
        with contextlib.suppress(APIError):
            tm.metrics.update_from_stats(await tm.get_stats(METRICS_STATS_TIMEOUT_S))
        return Response(tm.metrics.render(), media_type=CONTENT_TYPE)

    @router.get("/debug/check_integrity")
    async def check_integrity() -> Response:
        """Runs the KV accounting check in the scheduler now; 500 if it fails or ever failed."""
        res = await tm.check_integrity()
        healthy = res.ok and res.idle_check_failures == 0
        return json_response(msgspec.to_builtins(res), 200 if healthy else 500)

    return router


def _openai_router(tm: TokenizerManager) -> APIRouter | None:
    try:
        from sglang.server.openai import build_openai_router
    except ModuleNotFoundError as e:
        if e.name is not None and e.name.startswith("sglang.server.openai"):
            return None  # not written yet
        raise
    return build_openai_router(tm)


def build_app(tm: TokenizerManager, server_args: ServerArgs) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await tm.start()
        # One round trip through scheduler and detokenizer: the pipeline is really up.
        await tm.get_stats(STARTUP_PING_TIMEOUT_S)
        logger.info("server ready")
        yield
        await tm.stop()

    app = FastAPI(title="sglang", version="0.1.0", lifespan=lifespan)
    install_exception_handlers(app)
    app.add_middleware(GuardMiddleware, tm=tm, api_key=server_args.api_key,
                       max_request_bytes=server_args.max_request_bytes)
    app.include_router(build_native_router(tm, server_args))
    app.include_router(build_utility_router(tm, server_args))
    app.include_router(build_reasoning_router(server_args))
    router = _openai_router(tm)
    if router is not None:
        app.include_router(router)
    return app
