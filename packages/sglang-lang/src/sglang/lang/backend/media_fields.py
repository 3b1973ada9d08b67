"""sgl.image / sgl.video items as /generate's `image_data` / `video_data` (JSON-ready).

Local files and bytes are sent as base64, as SGLang's frontend does: the server may run on
another machine, where the program's paths mean nothing. URLs, data URIs and base64 strings go
as they are (the server fetches or decodes them)."""

from __future__ import annotations

import base64
import os
from typing import Any

from sglang.protocol.media import MediaRef, VideoRef


def _portable(data: MediaRef) -> str:
    if isinstance(data, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(data)).decode("ascii")
    path = os.path.expanduser(data)
    if not data.startswith("data:") and "://" not in data and os.path.isfile(path):
        with open(path, "rb") as f:
            return base64.b64encode(f.read()).decode("ascii")
    return data


def media_fields(media: list[dict[str, Any]] | None, portable: bool = True) -> dict[str, Any]:
    """{"image_data": [...], "video_data": [...]} for the items (empty ones left out);
    `portable=False` (an in-process Engine) leaves paths and bytes as they are."""
    def ref(data: MediaRef) -> MediaRef:
        return _portable(data) if portable else data

    images = [ref(m["data"]) for m in media or () if m["type"] == "image"]
    videos = [
        VideoRef(source=ref(m["data"]), num_frames=m.get("num_frames")).to_json()
        for m in media or () if m["type"] == "video"
    ]
    out: dict[str, Any] = {}
    if images:
        out["image_data"] = images
    if videos:
        out["video_data"] = videos
    return out


def per_prompt(fields: dict[str, Any], n: int) -> dict[str, Any]:
    """The same media for each of `n` prompts of a batch."""
    return {k: [v] * n for k, v in fields.items()}


__all__ = ["media_fields", "per_prompt"]
