"""Media references in requests (torch-free): what `image_data` / `video_data` may hold, and how
one, a list, or a list per prompt of a batch is spread over the prompts.

A video reference may also say how many frames to sample: `{"url": <reference>, "num_frames": N}`
in JSON (the shape of the OpenAI `video_url` part), or a `VideoRef` from Python. Input processors
read any video entry through `VideoRef.parse`, whatever form the client used."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import msgspec

# A file path, an http(s) URL, a raw base64 string, a `data:<mime>;base64,...` URI, or the raw
# bytes of an encoded file. Users of SGLang pass plain strings; bytes come from Python callers.
MediaRef = str | bytes
# The text that stands for an image / a video in a prompt, unless the model's input processor
# names its own (`image_token` / `video_token` attributes): LLaVA-family tokenizers add these.
MEDIA_TOKENS = {"image": "<image>", "video": "<video>"}


def processor_media_tokens(processor: object) -> dict[str, str]:
    """"image" / "video" -> the token text a model's input processor expects."""
    return {kind: getattr(processor, f"{kind}_token", None) or token
            for kind, token in MEDIA_TOKENS.items()}


# The keys of a video reference given as a dict; `num_frames` may be left out.
VIDEO_KEYS = ("url", "num_frames")


class VideoRef(msgspec.Struct, frozen=True, kw_only=True):
    """A video and the number of frames to sample from it (None: the model's default)."""

    source: MediaRef
    num_frames: int | None = None

    @classmethod
    def parse(cls, value: object) -> VideoRef:
        """A video entry of a request as a VideoRef: a reference alone, a dict with `url` and
        optionally `num_frames`, or a VideoRef. ValueError names what is wrong."""
        if isinstance(value, VideoRef):
            return value
        if isinstance(value, str | bytes):
            return cls(source=value)
        if not isinstance(value, Mapping):
            raise ValueError(
                f"a video reference must be a string, bytes or an object "
                f"{{\"url\": ..., \"num_frames\": N}}, not {type(value).__name__}"
            )
        unknown = sorted(set(value) - set(VIDEO_KEYS))
        if unknown:
            raise ValueError(
                f"unknown key(s) {', '.join(map(repr, unknown))} in a video reference; "
                f"known: {', '.join(VIDEO_KEYS)}"
            )
        source, frames = value.get("url"), value.get("num_frames")
        if not isinstance(source, str | bytes):
            raise ValueError("a video reference object needs 'url': a path, URL, base64, "
                             "data URI or bytes")
        if frames is not None and (isinstance(frames, bool) or not isinstance(frames, int)
                                   or frames < 1):
            raise ValueError(f"'num_frames' must be a positive integer, got {frames!r}")
        return cls(source=source, num_frames=frames)

    def to_json(self) -> dict[str, Any]:
        """The JSON form a client sends (bytes are not JSON: send base64 instead)."""
        out: dict[str, Any] = {"url": self.source}
        if self.num_frames is not None:
            out["num_frames"] = self.num_frames
        return out


# One entry of `image_data` (a MediaRef) or `video_data` (a MediaRef, a dict, or a VideoRef).
MediaEntry = MediaRef | Mapping[str, Any] | VideoRef
# What a request field holds: one entry, a list, or (for a batch) one item per prompt, each
# item one entry, a list of them, or None.
MediaField = MediaEntry | Sequence[MediaEntry | Sequence[MediaEntry] | None] | None


def _is_ref(value: object, field: str) -> bool:
    if isinstance(value, str | bytes):
        return True
    return field == "video_data" and isinstance(value, Mapping | VideoRef)


def _check(value: Any, field: str) -> Any:
    if field == "video_data":
        VideoRef.parse(value)  # a malformed dict is the client's error, found up front
    return value


def _refs(value: object, field: str) -> list[Any]:
    if value is None:
        return []
    if _is_ref(value, field):
        return [_check(value, field)]
    if isinstance(value, list | tuple) and all(_is_ref(v, field) for v in value):
        return [_check(v, field) for v in value]
    extra = " or {\"url\": ..., \"num_frames\": N} objects" if field == "video_data" else ""
    raise ValueError(
        f"'{field}' entries must be strings (path, URL, base64, data URI) or bytes{extra}"
    )


def media_per_prompt(
    data: MediaField, batch_size: int, is_batch: bool, field: str
) -> list[list[Any]]:
    """The media references of each prompt. A single prompt takes one reference or a list of
    them. A batch takes one list entry per prompt (each a reference, a list, or None); one
    reference alone is rejected for a batch, since it is ambiguous which prompt it belongs to."""
    if data is None:
        return [[] for _ in range(batch_size)]
    if not is_batch:
        return [_refs(data, field)]
    if _is_ref(data, field) or not isinstance(data, list | tuple):
        raise ValueError(
            f"'{field}' must be a list with one entry per prompt of the batch "
            f"(each a reference, a list of them, or null)"
        )
    if len(data) != batch_size:
        raise ValueError(f"'{field}' has {len(data)} entries for {batch_size} prompts")
    return [_refs(entry, field) for entry in data]


__all__ = ["MEDIA_TOKENS", "VIDEO_KEYS", "processor_media_tokens", "MediaEntry", "MediaField", "MediaRef", "VideoRef", "media_per_prompt"]
