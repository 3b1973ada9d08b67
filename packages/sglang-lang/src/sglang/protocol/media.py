"""Media references in requests (torch-free): what `image_data` / `video_data` may hold, and how
one, a list, or a list per prompt of a batch is spread over the prompts."""

from __future__ import annotations

from collections.abc import Sequence

# A file path, an http(s) URL, a raw base64 string, a `data:<mime>;base64,...` URI, or the raw
# bytes of an encoded file. Users of SGLang pass plain strings; bytes come from Python callers.
MediaRef = str | bytes
# What a request field holds: one reference, a list, or (for a batch) one entry per prompt,
# each entry one reference, a list of them, or None.
MediaField = MediaRef | Sequence[MediaRef | Sequence[MediaRef] | None] | None


def _is_ref(value: object) -> bool:
    return isinstance(value, str | bytes)


def _refs(value: object, field: str) -> list[MediaRef]:
    if value is None:
        return []
    if _is_ref(value):
        return [value]  # type: ignore[list-item]
    if isinstance(value, list | tuple) and all(_is_ref(v) for v in value):
        return list(value)
    raise ValueError(f"'{field}' entries must be strings (path, URL, base64, data URI) or bytes")


def media_per_prompt(
    data: MediaField, batch_size: int, is_batch: bool, field: str
) -> list[list[MediaRef]]:
    """The media references of each prompt. A single prompt takes one reference or a list of
    them. A batch takes one list entry per prompt (each a reference, a list, or None); one
    reference alone is rejected for a batch, since it is ambiguous which prompt it belongs to."""
    if data is None:
        return [[] for _ in range(batch_size)]
    if not is_batch:
        return [_refs(data, field)]
    if _is_ref(data) or not isinstance(data, list | tuple):
        raise ValueError(
            f"'{field}' must be a list with one entry per prompt of the batch "
            f"(each a reference, a list of them, or null)"
        )
    if len(data) != batch_size:
        raise ValueError(f"'{field}' has {len(data)} entries for {batch_size} prompts")
    return [_refs(entry, field) for entry in data]


__all__ = ["MediaField", "MediaRef", "media_per_prompt"]
