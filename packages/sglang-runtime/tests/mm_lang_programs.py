"""sgl programs with sgl.image / sgl.video on the toy vision-language model (mm_toy), and the
checks shared by the frontend tests over the Engine (in-process) and over HTTP (RuntimeEndpoint,
sgl.Runtime). `reference(text, images)` answers the program's prompt with a direct generate
call; the program must give the same answer."""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mm_toy import IMAGE_TOKENS, png_bytes

import sglang as sgl

QUESTION = " t5 t6"
GEN = {"max_tokens": 4, "temperature": 0, "ignore_eos": True}
SAMPLING = {"max_new_tokens": 4, "temperature": 0, "ignore_eos": True}
# (prompt text, images as base64) -> the generated text
Reference = Callable[[str, list[str]], str]


@sgl.function
def ask(s: Any, image: Any) -> None:
    s += sgl.image(image) + QUESTION
    s += sgl.gen("answer", **GEN)


@sgl.function
def ask_forked(s: Any, image: Any) -> None:
    s += "t1 " + sgl.image(image) + QUESTION
    forks = s.fork(2)
    for i, f in enumerate(forks):
        f += f" t{7 + i}" + sgl.gen("answer", **GEN)
    forks.join()


@sgl.function
def choose(s: Any, image: Any) -> None:
    s += sgl.image(image) + QUESTION + sgl.select("pick", choices=["t9", "t10 t11"])


@sgl.function
def watch(s: Any, video: Any) -> None:
    s += sgl.video(video, num_frames=4) + QUESTION + sgl.gen("answer", **GEN)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def check_image_forms(backend: Any, reference: Reference, tmp_path: Path) -> None:
    """A path and raw bytes give the answer of a direct call on the same prompt and image."""
    data = png_bytes(21)
    path = tmp_path / "picture.png"
    path.write_bytes(data)
    expected = reference("<image>" + QUESTION, [b64(data)])
    for image in (str(path), data):
        state = ask.run(image, backend=backend)
        assert state.text() == "<image>" + QUESTION + state["answer"]
        assert state["answer"] == expected
        meta = state.get_meta_info("answer")
        assert meta["prompt_tokens"] > IMAGE_TOKENS  # the image was spliced in


def check_fork_shares_the_image(backend: Any, reference: Reference) -> None:
    data = png_bytes(22)
    state = ask_forked.run(data, backend=backend)
    prefix = "t1 <image>" + QUESTION
    assert state["answer"] == [reference(prefix + f" t{7 + i}", [b64(data)]) for i in range(2)]


def check_run_batch(backend: Any, reference: Reference, n: int = 16) -> None:
    images = [png_bytes(30 + i % 4) for i in range(n)]
    states = ask.run_batch([{"image": im} for im in images], backend=backend)
    expected = {i: reference("<image>" + QUESTION, [b64(images[i])]) for i in range(4)}
    assert [s["answer"] for s in states] == [expected[i % 4] for i in range(n)]


def check_select(backend: Any) -> None:
    state = choose.run(png_bytes(23), backend=backend)
    assert state["pick"] in ("t9", "t10 t11")
    assert state.get_meta_info("pick")["prompt_tokens"] > IMAGE_TOKENS


def check_video_reaches_the_processor(backend: Any, tmp_path: Path) -> None:
    """The toy model takes no videos: its refusal proves the video (and num_frames) arrived."""
    path = tmp_path / "clip.mp4"
    path.write_bytes(b"not really a video")
    state = watch.run(str(path), backend=backend)
    assert state.error() is not None and "takes no videos" in str(state.error())
