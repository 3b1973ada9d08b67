"""Shared fixtures of the server tests: one live server on the embedded SmolLM2 for the session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from live_server import LiveServer, launch, wait_idle
from tool_models import save_tools_model


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


@pytest.fixture
def fresh(server: LiveServer) -> Iterator[LiveServer]:
    """The test module's own `server` with an empty prefix cache; once the test is done the
    server must be idle again and pass the KV integrity check."""
    with server.client() as c:
        assert c.post("/flush_cache").status_code == 200
    yield server
    wait_idle(server)


@pytest.fixture(scope="session")
def tools_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A tiny random model whose chat template renders tools (tool_models), shared by the
    tool-calling tests (the openai client's and the agent frameworks')."""
    model = save_tools_model(tmp_path_factory.mktemp("tools_model"))
    server = launch("--model-path", model, "--device", "cpu", "--max-total-tokens", "16384",
                    "--context-length", "2048")
    try:
        yield server
    finally:
        server.stop()
