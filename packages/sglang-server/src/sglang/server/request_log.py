"""--log-requests: one log line per finished request. uvicorn's access log stays off (it would
print a line per HTTP call without what a request cost); this line has the request id, how it
ended, its token counts and its time."""

from __future__ import annotations

import logging

# Its own logger, so --log-requests shows the lines whatever --log-level says.
logger = logging.getLogger("sglang.server.requests")


def enable_request_log() -> None:
    logger.setLevel(logging.INFO)


def log_request(
    rid: str, finish: str, prompt_tokens: int, completion_tokens: int, seconds: float
) -> None:
    logger.info(
        "request %s finished (%s): prompt_tokens=%d completion_tokens=%d time=%.3fs",
        rid, finish, prompt_tokens, completion_tokens, seconds,
    )
