"""`image_data` / `video_data` on the /generate body: accepted shapes, validation, batch split."""

from __future__ import annotations

import msgspec
import pytest

from sglang.protocol.generate import GenerateReqInput, InvalidRequest
from sglang.protocol.media import media_per_prompt


def _decode(body: bytes) -> GenerateReqInput:
    req = msgspec.json.decode(body, type=GenerateReqInput)
    req.validate()
    return req


def test_single_prompt_takes_one_reference_or_a_list() -> None:
    one = _decode(b'{"text": "a <image>", "image_data": "cat.png"}')
    many = _decode(b'{"text": "a", "image_data": ["cat.png", "dog.png"], "video_data": "v.mp4"}')
    assert media_per_prompt(one.image_data, 1, False, "image_data") == [["cat.png"]]
    assert media_per_prompt(many.image_data, 1, False, "image_data") == [["cat.png", "dog.png"]]
    assert media_per_prompt(many.video_data, 1, False, "video_data") == [["v.mp4"]]
    assert one.split() == [one]


def test_batch_takes_one_entry_per_prompt_and_splits_it() -> None:
    req = _decode(
        b'{"text": ["a", "b", "c"], "image_data": ["x.png", null, ["y.png", "z.png"]],'
        b' "video_data": [null, "v.mp4", null]}'
    )
    parts = req.split()
    assert [p.image_data for p in parts] == ["x.png", None, ["y.png", "z.png"]]
    assert [p.video_data for p in parts] == [None, "v.mp4", None]
    for p in parts:
        p.validate()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"text": ["a", "b"], "image_data": "x.png"}', "one entry per prompt"),
        (b'{"text": ["a", "b"], "image_data": ["x.png"]}', "1 entries for 2 prompts"),
        (b'{"input_ids": [[1], [2]], "video_data": ["v", "w", "u"]}', "3 entries for 2 prompts"),
    ],
)
def test_mismatched_media_names_the_field(body: bytes, message: str) -> None:
    req = msgspec.json.decode(body, type=GenerateReqInput)
    with pytest.raises(InvalidRequest, match=message) as info:
        req.validate()
    assert info.value.param in ("image_data", "video_data")


def test_python_callers_may_pass_bytes() -> None:
    assert media_per_prompt(b"\x89PNG", 1, False, "image_data") == [[b"\x89PNG"]]
    assert media_per_prompt([b"a", None], 2, True, "image_data") == [[b"a"], []]
    with pytest.raises(ValueError, match="must be strings"):
        media_per_prompt([3], 1, False, "image_data")
