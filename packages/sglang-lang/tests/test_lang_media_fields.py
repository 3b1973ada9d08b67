"""How sgl.image / sgl.video items travel to a runtime: local files and bytes as base64 (the
server may be elsewhere), URLs and data URIs as given, videos with num_frames; an in-process
Engine gets them untouched. The server's media tokens reach the frontend's template."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from sglang.lang.backend.media_fields import media_fields, per_prompt
from sglang.lang.backend.runtime_endpoint import chat_template_from_info


def test_files_and_bytes_travel_as_base64(tmp_path: Path) -> None:
    path = tmp_path / "cat.png"
    path.write_bytes(b"\x89PNG pixels")
    url, uri = "https://example.invalid/a.png", "data:image/png;base64,AAAA"
    media = [{"type": "image", "data": str(path)}, {"type": "image", "data": b"raw"},
             {"type": "image", "data": url}, {"type": "image", "data": uri},
             {"type": "video", "data": str(path), "num_frames": 8}]
    fields = media_fields(media)
    b64 = base64.b64encode(b"\x89PNG pixels").decode()
    assert fields["image_data"] == [b64, base64.b64encode(b"raw").decode(), url, uri]
    assert fields["video_data"] == [{"url": b64, "num_frames": 8}]
    local = media_fields(media, portable=False)
    assert local["image_data"] == [str(path), b"raw", url, uri]
    assert local["video_data"] == [{"url": str(path), "num_frames": 8}]


def test_no_media_adds_no_fields_and_batches_repeat_them() -> None:
    assert media_fields([]) == {} and media_fields(None) == {}
    fields = media_fields([{"type": "image", "data": "x.invalid://"}])
    assert per_prompt(fields, 3) == {"image_data": [["x.invalid://"]] * 3}


def test_a_missing_path_is_left_for_the_server_to_refuse() -> None:
    assert media_fields([{"type": "image", "data": "/no/such.png"}]) == {
        "image_data": ["/no/such.png"]}


@pytest.mark.parametrize(("info", "expected"), [
    ({}, ("<image>", "<video>")),
    ({"image_token": "<image_placeholder>"}, ("<image_placeholder>", "<video>")),
])
def test_the_server_names_the_media_tokens(info: dict, expected: tuple[str, str]) -> None:
    described = {"name": "x", "role_prefix_and_suffix": {"user": ["U:", "\n"]}, **info}
    template = chat_template_from_info(described)
    assert template is not None
    assert (template.image_token, template.video_token) == expected
