"""Fan-out of one OpenAI request into its generations (n copies × prompts) and the SSE stream
that merges them."""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import AsyncIterator, Awaitable
from contextlib import aclosing
from typing import Any, TypeVar

import msgspec
from fastapi import Request
from fastapi.responses import Response, StreamingResponse

from sglang.protocol.generate import GenerateReqInput
from sglang.runtime.result import ResultAccumulator, ResultStep
from sglang.server.errors import APIError
from sglang.server.openai.common import (
    LogprobEntry,
    TokenizerManagerLike,
    abort_error,
    finish_reason,
    usage_totals,
)
from sglang.server.openai.protocol import usage_dict

logger = logging.getLogger(__name__)

T = TypeVar("T")


async def _aclose(it: AsyncIterator[ResultStep]) -> None:
    close = getattr(it, "aclose", None)
    if close is not None:
        await close()


async def gather_or_cancel(aws: list[Awaitable[T]]) -> list[T]:
    """Like asyncio.gather, but the first failure cancels the rest (gather leaves them running)."""
    tasks = [asyncio.ensure_future(a) for a in aws]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    finally:
        failed = [t for t in tasks if t.done() and not t.cancelled() and t.exception()]
        if failed or not all(t.done() for t in tasks):
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    if failed:
        raise failed[0].exception()  # type: ignore[misc]
    return [t.result() for t in tasks]


Started = tuple[ResultStep, AsyncIterator[ResultStep]]


async def start_all(
    tm: TokenizerManagerLike, objs: list[GenerateReqInput], request: Request | None
) -> list[Started]:
    """Prepare every prompt (the runtime's front door fans out `n`: copy j gets seed + j), open
    every generation, in prompt order with copies together, and wait for its first step, so
    input errors become a 400 before any response header is sent."""
    async def first(it: AsyncIterator[ResultStep]) -> ResultStep:
        try:
            return await it.__anext__()
        except StopAsyncIteration:
            raise APIError("the generation ended without output", 500, "server_error") from None

    gens: list[AsyncIterator[ResultStep]] = []
    try:
        # Every prompt is prepared before any starts: a bad one refuses the request whole.
        msgs = [(obj, p.msg) for obj in objs for p in (await tm.prepare(obj)).reqs]
        for obj, msg in msgs:
            it: Any = tm.stream(obj, request, msg)
            gens.append(await it if inspect.isawaitable(it) else it)
        firsts = await gather_or_cancel([first(g) for g in gens])
    except BaseException:
        await asyncio.gather(*(_aclose(g) for g in gens), return_exceptions=True)
        raise
    return list(zip(firsts, gens))


async def run_to_end(started: Started) -> ResultAccumulator:
    first, it = started
    try:
        async for _ in it:
            pass
    finally:
        await _aclose(it)
    return first.acc


async def merge(started: list[Started]) -> AsyncIterator[tuple[int, ResultStep]]:
    """(index, step) pairs from all generations as they arrive."""
    queue: asyncio.Queue[tuple[int, ResultStep | None, BaseException | None]] = asyncio.Queue()

    async def pump(i: int, first: ResultStep, it: AsyncIterator[ResultStep]) -> None:
        try:
            await queue.put((i, first, None))
            async for chunk in it:
                await queue.put((i, chunk, None))
            await queue.put((i, None, None))
        except Exception as e:
            await queue.put((i, None, e))
        finally:
            await _aclose(it)

    tasks = [asyncio.ensure_future(pump(i, f, it)) for i, (f, it) in enumerate(started)]
    try:
        remaining = len(tasks)
        while remaining:
            i, chunk, err = await queue.get()
            if err is not None:
                raise err
            if chunk is None:
                remaining -= 1
            else:
                yield i, chunk
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


# ---- responses ----------------------------------------------------------------------------

SSE_DONE = b"data: [DONE]\n\n"


def sse(obj: Any) -> bytes:
    return b"data: " + msgspec.json.encode(obj) + b"\n\n"


def json_response(obj: Any) -> Response:
    return Response(msgspec.json.encode(obj), media_type="application/json")


def sse_response(events: AsyncIterator[bytes]) -> StreamingResponse:
    return StreamingResponse(
        events, media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def stream_error(e: BaseException) -> bytes:
    """An error after the 200 header went out: OpenAI-style error object as an SSE event."""
    if isinstance(e, APIError):
        return sse(e.body())
    logger.exception("error while streaming a response", exc_info=e)
    return sse(APIError(f"internal error: {e!r}", 500, "server_error").body())


class StreamFormat:
    """How one endpoint shapes its SSE chunks; `stream_events` drives it."""

    object_name = ""

    def __init__(self, response_id: str, model: str, created: int, include_usage: bool,
                 continuous_usage: bool = False) -> None:
        self.response_id, self.model, self.created = response_id, model, created
        self.include_usage = include_usage
        # stream_options.continuous_usage_stats: every chunk carries the usage so far.
        self.continuous_usage = continuous_usage

    def wrap(self, choices: list[dict[str, Any]]) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": self.response_id, "object": self.object_name, "created": self.created,
            "model": self.model, "choices": choices,
        }
        if self.include_usage:  # OpenAI: null on every chunk but the last one
            body["usage"] = None
        return body

    def opening(self, k: int) -> dict[str, Any] | None:
        return None

    def content(
        self, k: int, step: ResultStep, first: bool, lps: list[LogprobEntry], tops: list[Any]
    ) -> dict[str, Any] | None:
        """The choice for step `step` of generation `k` (None: nothing to send); `lps`/`tops`
        are its new output logprobs."""
        raise NotImplementedError

    def finish(self, k: int, reason: str) -> dict[str, Any]:
        raise NotImplementedError

    # A format that turns one step into several chunks (tool call deltas) overrides these.
    def content_chunks(
        self, k: int, step: ResultStep, first: bool, lps: list[LogprobEntry], tops: list[Any]
    ) -> list[dict[str, Any]]:
        choice = self.content(k, step, first, lps, tops)
        return [] if choice is None else [choice]

    def finish_chunks(self, k: int, reason: str) -> list[dict[str, Any]]:
        return [self.finish(k, reason)]


async def stream_events(started: list[Started], n: int, fmt: StreamFormat) -> AsyncIterator[bytes]:
    """SSE bytes: openings, content deltas, one finish chunk per choice, the usage chunk when
    asked, then [DONE]. Errors after the header become an error event."""
    gens = [first.acc for first, _ in started]

    def chunk(choices: list[dict[str, Any]]) -> bytes:
        body = fmt.wrap(choices)
        if fmt.continuous_usage:
            body["usage"] = usage_dict(*usage_totals(gens, n))
        return sse(body)

    logprobs_seen = [0] * len(started)
    seen = [False] * len(started)
    produced = [False] * len(started)
    try:
        for k in range(len(started)):
            opening = fmt.opening(k)
            if opening is not None:
                yield chunk([opening])
        async with aclosing(merge(started)) as chunks:
            async for k, step in chunks:
                lps, tops = step.new_output_logprobs(logprobs_seen[k])
                logprobs_seen[k] = step.num_output_logprobs
                produced[k] = produced[k] or bool(step.delta)
                reason = finish_reason(step)
                if reason == "abort" and not produced[k]:
                    raise abort_error(step)
                for choice in fmt.content_chunks(k, step, not seen[k], lps, tops):
                    yield chunk([choice])
                seen[k] = True
                if reason is not None:
                    for choice in fmt.finish_chunks(k, reason):
                        yield chunk([choice])
        if fmt.include_usage:
            body = fmt.wrap([])
            body["usage"] = usage_dict(*usage_totals(gens, n))
            yield sse(body)
    except Exception as e:
        yield stream_error(e)
    yield SSE_DONE
