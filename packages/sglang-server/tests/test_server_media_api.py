"""How clients send images, against a live server on the toy vision-language model (the runtime
tests' mm_toy, found through entry points) with the vicuna_v1.1 template: the official OpenAI
client with image_url data URIs, parts placed where they were (equal to /generate on the same
rendered prompt), prefix caching over the image, and bad media of many kinds, each an
OpenAI-style 400 through both /generate and /v1/chat/completions, after which the server keeps
serving."""

from __future__ import annotations

import base64
import io
import struct
import sys
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from live_server import LiveServer, launch
from toy_vl_dist import RUNTIME_TESTS, write_toy_dist

sys.path.insert(0, str(RUNTIME_TESTS))
import mm_toy  # noqa: E402
from mm_toy import IMAGE_TOKENS, png_bytes  # noqa: E402

from sglang.server.chat_templates import get_chat_template  # noqa: E402

TEMPLATE = "vicuna_v1.1"
GREEDY = {"temperature": 0, "max_new_tokens": 4, "ignore_eos": True}
CONTEXT = 512  # the toy's max_position_embeddings


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def data_uri(data: bytes) -> str:
    return f"data:image/png;base64,{b64(data)}"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    pytest.importorskip("PIL")
    model = mm_toy.save_toy_model(tmp_path_factory.mktemp("toy_vl"))
    site = tmp_path_factory.mktemp("mm_site")
    write_toy_dist(site)
    srv = launch("--model-path", model, "--device", "cpu", "--max-total-tokens", "4096",
                 "--chat-template", TEMPLATE, "--debug-check-integrity",
                 pythonpath=[site, RUNTIME_TESTS])
    try:
        yield srv
    finally:
        srv.stop()


def chat_body(content: Any, **extra: Any) -> dict[str, Any]:
    return {"model": "toy", "messages": [{"role": "user", "content": content}],
            "max_tokens": GREEDY["max_new_tokens"], "temperature": 0, "ignore_eos": True,
            **extra}


def image_part(url: str, **extra: Any) -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": url, **extra}}


def text_part(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text}


def generate_text(server: LiveServer, prompt: str, images: list[str]) -> dict[str, Any]:
    with server.client() as c:
        r = c.post("/generate", json={"text": prompt, "image_data": images,
                                      "sampling_params": GREEDY})
    assert r.status_code == 200, r.text
    return r.json()


def rendered(content: str) -> str:
    return get_chat_template(TEMPLATE).render([{"role": "user", "content": content}])


def test_openai_client_image_url_matches_generate_and_caches_the_image(
    fresh: LiveServer,
) -> None:
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=f"{fresh.url}/v1", api_key="none")
    image = png_bytes(3)
    messages = [{"role": "user", "content": [image_part(data_uri(image), detail="high"),
                                             text_part("t5 t6 t7")]}]
    extra = {"ignore_eos": True}
    first = client.chat.completions.create(model="toy", messages=messages, max_tokens=4,
                                           temperature=0, extra_body=extra)
    second = client.chat.completions.create(model="toy", messages=messages, max_tokens=4,
                                            temperature=0, extra_body=extra)
    # The image part became the image token where it was, and the image went as image_data.
    native = generate_text(fresh, rendered("<image>\nt5 t6 t7"), [b64(image)])
    assert first.choices[0].message.content == native["text"]
    assert first.usage.prompt_tokens == native["meta_info"]["prompt_tokens"]
    assert first.usage.prompt_tokens > IMAGE_TOKENS
    assert second.choices[0].message.content == first.choices[0].message.content
    # The whole prompt, image included, came from the prefix cache the second time.
    cached = second.usage.prompt_tokens_details.cached_tokens
    assert cached >= first.usage.prompt_tokens - 1 > IMAGE_TOKENS


def test_two_images_go_in_part_order(fresh: LiveServer) -> None:
    a, b = png_bytes(10), png_bytes(11)
    outs = []
    with fresh.client() as c:
        for first, second in [(a, b), (b, a)]:
            body = chat_body([image_part(data_uri(first)), text_part("t9"),
                              image_part(data_uri(second))], logprobs=True)
            r = c.post("/v1/chat/completions", json=body)
            assert r.status_code == 200, r.text
            outs.append(r.json())
    native = generate_text(fresh, rendered("<image>\nt9\n<image>"), [b64(a), b64(b)])
    assert outs[0]["choices"][0]["message"]["content"] == native["text"]
    assert outs[0]["usage"]["prompt_tokens"] == native["meta_info"]["prompt_tokens"]
    lps = [[t["logprob"] for t in o["choices"][0]["logprobs"]["content"]] for o in outs]
    assert lps[0] != pytest.approx(lps[1], abs=1e-4)  # swapping the images changes the answer


def test_streamed_chat_with_an_image_equals_the_whole_answer(fresh: LiveServer) -> None:
    import json

    body = chat_body([image_part(data_uri(png_bytes(6))), text_part("t2 t3")])
    with fresh.client() as c:
        whole = c.post("/v1/chat/completions", json=body)
        assert whole.status_code == 200, whole.text
        pieces = []
        with c.stream("POST", "/v1/chat/completions", json={**body, "stream": True}) as r:
            assert r.status_code == 200
            for line in r.iter_lines():
                if line.startswith("data:") and line[5:].strip() != "[DONE]":
                    for choice in json.loads(line[5:])["choices"]:
                        pieces.append(choice["delta"].get("content") or "")
    assert "".join(pieces) == whole.json()["choices"][0]["message"]["content"]


def test_modalities_text_is_served_and_audio_refused(fresh: LiveServer) -> None:
    with fresh.client() as c:
        ok = c.post("/v1/chat/completions", json=chat_body(
            [image_part(data_uri(png_bytes(1))), text_part("t3")], modalities=["text", "image"]))
        assert ok.status_code == 200, ok.text
        bad = c.post("/v1/chat/completions", json=chat_body("t3", modalities=["text", "audio"]))
    assert_400(bad, "modalities", "generates text only")


def test_video_url_part_reaches_the_processor_with_num_frames(fresh: LiveServer) -> None:
    with fresh.client() as c:
        r = c.post("/v1/chat/completions", json=chat_body(
            [{"type": "video_url", "video_url": {"url": "clip.mp4", "num_frames": 4}}]))
        assert_400(r, "messages", "takes no videos")
        r = c.post("/generate", json={"text": "t1 <video>", "sampling_params": GREEDY,
                                      "video_data": {"url": "clip.mp4", "num_frames": 4}})
        assert_400(r, "video_data", "takes no videos")


# ---- bad media --------------------------------------------------------------------------------


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def zero_size_png() -> bytes:
    header = struct.pack(">IIBBBBB", 0, 0, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header)
            + _png_chunk(b"IDAT", zlib.compress(b"")) + _png_chunk(b"IEND", b""))


def truncated_png() -> bytes:
    import numpy as np
    from PIL import Image

    noisy = np.random.default_rng(0).integers(0, 256, (64, 64, 3), np.uint8)
    buf = io.BytesIO()
    Image.fromarray(noisy).save(buf, format="PNG")
    return buf.getvalue()[: len(buf.getvalue()) // 2]


# id -> (reference for image_data / image_url.url, fragment of the error message)
BAD_MEDIA: dict[str, tuple[Any, str]] = {
    "not-base64": ("bm90!!IGFu#IGltYWdl", "not valid base64"),
    "not-an-image": (b64(b"just some text, not pixels"), "cannot decode image"),
    "truncated-png": (None, "truncated"),
    "zero-size": (None, "cannot decode image"),
    "empty": ("", "empty"),
    "missing-file": ("/no/such/dir/cat.png", "does not exist"),
    "directory": (None, "is a directory"),
    "ftp-scheme": ("ftp://example.invalid/cat.png", "unsupported URL scheme"),
    "file-scheme": ("file:///etc/hostname", "unsupported URL scheme"),
    "data-uri-not-base64": ("data:image/png,rawpixels", "must be base64"),
    "unresolvable-url": ("https://images.invalid/cat.png", "does not resolve"),
}


def bad_ref(kind: str, tmp_path: Path) -> str:
    ref, _ = BAD_MEDIA[kind]
    made = {"truncated-png": lambda: b64(truncated_png()),
            "zero-size": lambda: b64(zero_size_png()), "directory": lambda: str(tmp_path)}
    return made[kind]() if kind in made else ref


def assert_400(r: Any, param: str, fragment: str, code: int | str = 400) -> None:
    assert r.status_code == 400, (r.status_code, r.text)
    err = r.json()["error"]
    assert err["type"] == "invalid_request_error" and err["code"] == code, err
    assert err["param"] is not None and err["param"].startswith(param), err
    assert fragment in err["message"], err


def still_serving(server: LiveServer) -> None:
    out = generate_text(server, "t1 <image> t2", [b64(png_bytes(0))])
    assert len(out["output_ids"]) == GREEDY["max_new_tokens"]


@pytest.mark.parametrize("kind", list(BAD_MEDIA))
def test_bad_media_is_a_400_on_both_routes(fresh: LiveServer, tmp_path: Path, kind: str) -> None:
    ref, fragment = bad_ref(kind, tmp_path), BAD_MEDIA[kind][1]
    with fresh.client() as c:
        r = c.post("/generate", json={"text": "t1 <image> t2", "image_data": ref,
                                      "sampling_params": GREEDY})
        assert_400(r, "image_data", fragment)
        r = c.post("/v1/chat/completions",
                   json=chat_body([image_part(ref), text_part("t1")]))
        assert_400(r, "messages", fragment)
    still_serving(fresh)


def test_more_images_than_the_context_holds(fresh: LiveServer) -> None:
    n = CONTEXT // IMAGE_TOKENS + 1
    image = data_uri(png_bytes(2))
    with fresh.client() as c:
        r = c.post("/generate", json={"text": "t1 " + "<image> " * n, "image_data": [image] * n,
                                      "sampling_params": GREEDY})
        assert_400(r, "image_data", f"for {n} images", "context_length_exceeded")
        assert "context length is 512" in r.json()["error"]["message"]
        r = c.post("/v1/chat/completions", json=chat_body([image_part(image)] * n))
        assert_400(r, "messages", "too many or too large media", "context_length_exceeded")
    still_serving(fresh)


def test_more_images_than_markers_and_bad_detail(fresh: LiveServer) -> None:
    image = b64(png_bytes(2))
    with fresh.client() as c:
        r = c.post("/generate", json={"text": "t1 <image> t2", "image_data": [image, image],
                                      "sampling_params": GREEDY})
        assert_400(r, "image_data", "1 image markers")
        r = c.post("/v1/chat/completions",
                   json=chat_body([image_part(data_uri(png_bytes(2)), detail="ultra")]))
        assert_400(r, "messages[0].content[0].image_url.detail", "detail must be one of")
    still_serving(fresh)
