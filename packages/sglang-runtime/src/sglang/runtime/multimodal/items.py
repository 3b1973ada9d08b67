"""Typed multimodal items and their placeholder ids (torch-free).

A prompt holds one run of placeholder ids per item. The ids lie beyond the vocabulary and derive
from the item's content hash: equal images give equal ids (and so share the radix cache) and
different ones give different ids (and never share), with no change to the cache. The sampler
never emits them (they are past the logits) and the model replaces them with the encoder's
embeddings before the embedding lookup could see them."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sglang.runtime.messages import MultimodalItem

# Placeholder ids are vocab_size + (hash mod this): far fewer than int64 allows, far more than
# the images a cache could ever hold at once, so a collision is practically impossible.
PLACEHOLDER_RANGE = 1 << 48


def content_hash(
    modality: str, features: bytes, dtype: str, shape: Sequence[int],
    meta: Mapping[str, object] | None = None,
) -> str:
    """Hash of what the encoder sees (not the file bytes): one picture in PNG and in JPEG
    preprocesses differently and so must not share KV."""
    h = hashlib.sha256()
    h.update(f"{modality}|{dtype}|{','.join(map(str, shape))}|".encode())
    if meta:
        h.update(json.dumps(meta, sort_keys=True).encode())
    h.update(features)
    return h.hexdigest()


def placeholder_id(content_hash: str, vocab_size: int) -> int:
    return vocab_size + int(content_hash[:16], 16) % PLACEHOLDER_RANGE


def placeholder_ids(content_hash: str, length: int, vocab_size: int) -> list[int]:
    """The ids that stand for an item in input_ids: `length` copies of one id >= vocab_size."""
    if length < 1:
        raise ValueError(f"a multimodal item needs at least one placeholder token, got {length}")
    return [placeholder_id(content_hash, vocab_size)] * length


@dataclass(frozen=True)
class Features:
    """An item before it has a place in the prompt: what an input processor computed."""

    modality: str  # "image" | "video"
    data: bytes  # C-contiguous buffer
    dtype: str
    shape: tuple[int, ...]
    num_tokens: int  # how many embeddings (placeholder positions) the encoder produces
    meta: dict[str, Any] = field(default_factory=dict)  # see MultimodalItem.meta


def splice_items(
    input_ids: Sequence[int], media: Mapping[int, Sequence[Features]], vocab_size: int
) -> tuple[list[int], list[MultimodalItem]]:
    """Replace the i-th occurrence of each marker id of `media` (LLaVA's <image>, <video>) with
    the placeholder ids of the i-th item given for that marker; the shared step of processors
    whose prompts mark each image or video with one token."""
    queues: dict[int, list[Features]] = {}
    for marker, feats in media.items():
        found = sum(1 for t in input_ids if t == marker)
        if found != len(feats):
            kind = feats[0].modality if feats else "image/video"
            raise ValueError(
                f"the prompt has {found} {kind} markers (token id {marker}) but {len(feats)} "
                f"{kind}s were given"
            )
        queues[marker] = list(reversed(feats))
    ids: list[int] = []
    items: list[MultimodalItem] = []
    for token in input_ids:
        queue = queues.get(token)
        if queue is None:
            ids.append(token)
            continue
        feat = queue.pop()
        digest = content_hash(feat.modality, feat.data, feat.dtype, feat.shape, feat.meta)
        items.append(MultimodalItem(
            modality=feat.modality, content_hash=digest, offset=len(ids),  # type: ignore[arg-type]
            length=feat.num_tokens, features=feat.data, dtype=feat.dtype, shape=list(feat.shape),
            meta=dict(feat.meta),
        ))
        ids.extend(placeholder_ids(digest, feat.num_tokens, vocab_size))
    return ids, items


def check_items(input_ids: Sequence[int], items: Sequence[MultimodalItem], vocab_size: int) -> None:
    """Spans in order, inside the prompt, disjoint, and holding their own placeholder ids: what
    the executor relies on when it scatters embeddings."""
    end = 0
    for item in items:
        if item.offset < end or item.end > len(input_ids) or item.length < 1:
            raise ValueError(
                f"{item.modality} span [{item.offset}, {item.end}) overlaps another or lies "
                f"outside the prompt of {len(input_ids)} tokens"
            )
        want = placeholder_id(item.content_hash, vocab_size)
        if any(t != want for t in input_ids[item.offset : item.end]):
            raise ValueError(f"{item.modality} span [{item.offset}, {item.end}) does not hold "
                             f"the placeholder ids of its content hash")
        end = item.end


def overlapping(
    items: Sequence[MultimodalItem], start: int, end: int
) -> list[tuple[MultimodalItem, int, int]]:
    """(item, first, last) for each item with positions in [start, end): the overlap is item
    rows [first, last), at prompt positions [item.offset + first, item.offset + last)."""
    out = []
    for item in items:
        lo, hi = max(start, item.offset), min(end, item.end)
        if lo < hi:
            out.append((item, lo - item.offset, hi - item.offset))
    return out
