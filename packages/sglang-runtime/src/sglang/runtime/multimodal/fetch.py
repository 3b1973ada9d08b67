"""Downloading media named by http(s) URLs, with the standard library only (the runtime gains no
HTTP client dependency for this).

Every failure is a ValueError that says what went wrong in words a client can act on (host not
found, offline, refused, HTTP status, too slow, too large), so the server answers it with a 400."""

from __future__ import annotations

import socket
import time
import urllib.error
import urllib.request
from urllib.parse import urlsplit

# The one place these limits are declared: a media URL must answer within FETCH_TIMEOUT_S
# (connect, and each read), finish within FETCH_DEADLINE_S (a server trickling bytes would
# otherwise hold a preparation thread for as long as it likes) and send at most MAX_MEDIA_BYTES.
FETCH_TIMEOUT_S = 20.0
FETCH_DEADLINE_S = 120.0
MAX_MEDIA_BYTES = 64 * 1024 * 1024

URL_SCHEMES = ("http://", "https://")
_CHUNK = 1 << 16
_USER_AGENT = "sglang-media-fetch"


def is_url(ref: str) -> bool:
    return ref.startswith(URL_SCHEMES)


def _reason(err: BaseException) -> str:
    """The cause of a urllib failure in plain words."""
    cause = getattr(err, "reason", err)
    if isinstance(cause, socket.gaierror):
        return "its host name does not resolve (no DNS, or the machine is offline)"
    if isinstance(cause, (TimeoutError, socket.timeout)):
        return "the server did not answer in time"
    if isinstance(cause, ConnectionRefusedError):
        return "the connection was refused"
    if isinstance(cause, OSError) and cause.errno is not None:
        return f"the network is unreachable or the host is down ({cause.strerror or cause})"
    return str(cause)


def fetch_url(url: str, timeout: float | None = None, max_bytes: int | None = None) -> bytes:
    """The body of a GET on `url`; ValueError when it cannot be had within the limits (None:
    the module's, read at call time so a deployment or a test can lower them)."""
    timeout = FETCH_TIMEOUT_S if timeout is None else timeout
    max_bytes = MAX_MEDIA_BYTES if max_bytes is None else max_bytes
    deadline = time.monotonic() + FETCH_DEADLINE_S
    shown = url if len(url) <= 80 else url[:80] + "..."
    if not urlsplit(url).hostname:
        raise ValueError(f"media URL {shown!r} has no host")
    request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            declared = resp.headers.get("Content-Length")
            if declared is not None and declared.isdigit() and int(declared) > max_bytes:
                raise ValueError(
                    f"media URL {shown!r} is too large: {int(declared)} bytes, the limit is "
                    f"{max_bytes}"
                )
            # Read in chunks so a server that lies about (or omits) its length still stops
            # at the cap instead of filling memory.
            chunks, size = [], 0
            while chunk := resp.read1(_CHUNK):  # what has arrived: the deadline is checked often
                size += len(chunk)
                if size > max_bytes:
                    raise ValueError(
                        f"media URL {shown!r} is too large: more than {max_bytes} bytes"
                    )
                chunks.append(chunk)
                if time.monotonic() > deadline:
                    raise ValueError(
                        f"media URL {shown!r} took longer than {FETCH_DEADLINE_S:g} s to download"
                    )
    except urllib.error.HTTPError as e:  # before URLError: it is a subclass
        raise ValueError(f"cannot fetch media URL {shown!r}: HTTP {e.code} {e.reason}") from e
    except (urllib.error.URLError, OSError) as e:
        raise ValueError(f"cannot fetch media URL {shown!r}: {_reason(e)}") from e
    return b"".join(chunks)


__all__ = ["FETCH_DEADLINE_S", "FETCH_TIMEOUT_S", "MAX_MEDIA_BYTES", "fetch_url", "is_url"]
