"""Video references that carry num_frames: the `{"url", "num_frames"}` object on /generate's
`video_data`, `VideoRef` from Python, and the errors for malformed ones."""

from __future__ import annotations

import msgspec
import pytest

from sglang.protocol.generate import GenerateReqInput, InvalidRequest
from sglang.protocol.media import VideoRef, media_per_prompt


def _decode(body: bytes) -> GenerateReqInput:
    req = msgspec.json.decode(body, type=GenerateReqInput)
    req.validate()
    return req


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ("clip.mp4", VideoRef(source="clip.mp4")),
        (b"\x00\x01", VideoRef(source=b"\x00\x01")),
        ({"url": "clip.mp4"}, VideoRef(source="clip.mp4")),
        ({"url": "clip.mp4", "num_frames": 8}, VideoRef(source="clip.mp4", num_frames=8)),
        (VideoRef(source="v", num_frames=2), VideoRef(source="v", num_frames=2)),
    ],
)
def test_every_form_parses_to_a_video_ref(entry: object, expected: VideoRef) -> None:
    assert VideoRef.parse(entry) == expected


def test_to_json_round_trips() -> None:
    ref = VideoRef(source="clip.mp4", num_frames=16)
    assert ref.to_json() == {"url": "clip.mp4", "num_frames": 16}
    assert VideoRef.parse(ref.to_json()) == ref
    assert VideoRef(source="a").to_json() == {"url": "a"}


def test_generate_body_carries_num_frames_per_prompt() -> None:
    req = _decode(
        b'{"text": ["a", "b", "c"], "video_data": [{"url": "v.mp4", "num_frames": 4}, null,'
        b' ["w.mp4", {"url": "x.mp4", "num_frames": 2}]]}'
    )
    per_prompt = media_per_prompt(req.video_data, 3, True, "video_data")
    assert [[VideoRef.parse(v) for v in vs] for vs in per_prompt] == [
        [VideoRef(source="v.mp4", num_frames=4)],
        [],
        [VideoRef(source="w.mp4"), VideoRef(source="x.mp4", num_frames=2)],
    ]
    assert req.split()[0].video_data == {"url": "v.mp4", "num_frames": 4}
    single = _decode(b'{"text": "a", "video_data": {"url": "v.mp4", "num_frames": 3}}')
    assert media_per_prompt(single.video_data, 1, False, "video_data") == [
        [{"url": "v.mp4", "num_frames": 3}]
    ]


@pytest.mark.parametrize(
    ("video", "message"),
    [
        (b'{"url": "v.mp4", "num_frames": 0}', "positive integer"),
        (b'{"url": "v.mp4", "num_frames": true}', "positive integer"),
        (b'{"num_frames": 4}', "needs 'url'"),
        (b'{"path": "v.mp4"}', "unknown key"),
    ],
)
def test_malformed_video_objects_name_the_field(video: bytes, message: str) -> None:
    req = msgspec.json.decode(b'{"text": "a", "video_data": ' + video + b"}",
                              type=GenerateReqInput)
    with pytest.raises(InvalidRequest, match=message) as info:
        req.validate()
    assert info.value.param == "video_data"


def test_images_do_not_take_objects() -> None:
    with pytest.raises(msgspec.ValidationError, match="image_data"):
        msgspec.json.decode(b'{"text": "a", "image_data": {"url": "x.png"}}',
                            type=GenerateReqInput)
    with pytest.raises(ValueError, match="must be strings"):
        media_per_prompt({"url": "x.png"}, 1, False, "image_data")
