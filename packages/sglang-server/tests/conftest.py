"""Shared fixtures of the server tests: one live server on the embedded SmolLM2 for the session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from live_server import LiveServer, launch


@pytest.fixture(scope="session")
def live_server() -> Iterator[LiveServer]:
    """A server shared by every test; tests must leave it idle and healthy. A small KV pool
    keeps start-up quick (the pool is allocated up front), a short context keeps the
    too-long-prompt test quick (its prefill fills the context)."""
    server = launch("--max-total-tokens", "32768", "--context-length", "1024")
    try:
        yield server
    finally:
        server.stop()
