"""sgl.image / sgl.video in @sgl.function programs over HTTP, on the toy vision-language model:
RuntimeEndpoint against a live server (paths and bytes, fork, run_batch of 16, select, video)
and sgl.Runtime, which launches its own server. Each answer must equal /generate's on the same
prompt and image."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from live_server import LiveServer, launch, wait_idle
from toy_vl_dist import RUNTIME_TESTS, write_toy_dist

sys.path.insert(0, str(RUNTIME_TESTS))
import mm_lang_programs as progs  # noqa: E402
import mm_toy  # noqa: E402


@pytest.fixture(scope="module")
def toy(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    pytest.importorskip("PIL")
    site = tmp_path_factory.mktemp("mm_site")
    write_toy_dist(site)
    return mm_toy.save_toy_model(tmp_path_factory.mktemp("toy_vl")), site


@pytest.fixture(scope="module")
def server(toy: tuple[str, Path]) -> Iterator[LiveServer]:
    model, site = toy
    srv = launch("--model-path", model, "--device", "cpu", "--max-total-tokens", "4096",
                 "--chat-template", "chatml", "--debug-check-integrity",
                 pythonpath=[site, RUNTIME_TESTS])
    try:
        yield srv
    finally:
        srv.stop()


def reference_for(url: str) -> progs.Reference:
    import httpx

    def answer(text: str, images: list[str]) -> str:
        r = httpx.post(f"{url}/generate", timeout=120, json={
            "text": text, "image_data": images, "sampling_params": progs.SAMPLING})
        assert r.status_code == 200, r.text
        return str(r.json()["text"])

    return answer


@pytest.fixture
def endpoint(server: LiveServer) -> Iterator[Any]:
    import sglang as sgl

    backend = sgl.RuntimeEndpoint(server.url)
    assert backend.flush_cache()
    yield backend
    backend.shutdown()
    wait_idle(server)


def test_model_info_names_the_media_tokens(endpoint: Any) -> None:
    described = endpoint.get_model_info()["chat_template"]
    assert (described["image_token"], described["video_token"]) == ("<image>", "<video>")
    template = endpoint.get_chat_template()
    assert (template.image_token, template.video_token) == ("<image>", "<video>")
    assert template.prefix("user") == "<|im_start|>user\n"


def test_image_forms(endpoint: Any, server: LiveServer, tmp_path: Path) -> None:
    progs.check_image_forms(endpoint, reference_for(server.url), tmp_path)


def test_fork_shares_the_image(endpoint: Any, server: LiveServer) -> None:
    progs.check_fork_shares_the_image(endpoint, reference_for(server.url))


def test_run_batch_of_16_image_questions(endpoint: Any, server: LiveServer) -> None:
    progs.check_run_batch(endpoint, reference_for(server.url))


def test_select_after_an_image(endpoint: Any) -> None:
    progs.check_select(endpoint)


def test_video_reaches_the_processor(endpoint: Any, tmp_path: Path) -> None:
    progs.check_video_reaches_the_processor(endpoint, tmp_path)


def test_sgl_runtime_serves_image_programs(
    toy: tuple[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sglang as sgl

    model, site = toy
    # The launched server finds the toy plug-in the way an installed one would be found.
    paths = [str(site), str(RUNTIME_TESTS), os.environ.get("PYTHONPATH", "")]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in paths if p))
    with sgl.Runtime(model_path=model, device="cpu", max_total_tokens=2048) as runtime:
        progs.check_image_forms(runtime, reference_for(runtime.url), tmp_path)
