"""Prompts to token ids with one marker id per image or video, ready for `splice_items`.

Text prompts: a tokenizer that knows a marker string as one token (llava-hf tokenizers, or any
tokenizer with `<image>` added) encodes the whole text at once, which is exactly what
transformers' processors do. A tokenizer without it (the original LLaVA and Yi-VL tokenizers)
gets the original LLaVA treatment: the text is split at the markers, each piece is encoded (the
first with the tokenizer's special tokens, the rest without) and the marker id goes between.

The marker ids are the caller's choice (see llava.Prepared): text prompts use ids outside every
vocabulary, so no token of the text can pass for a marker; id prompts use the model's own.

A prompt that holds no marker of a modality but comes with items of it gets one marker per item
in front, the way LLaVA users write single-image prompts: `<image>\\n` per image before the text
(after a leading BOS for id prompts). A prompt with some markers but not one per item is an
error (`splice_items` says how many of each it found)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Marker:
    """How one modality is marked: the strings that stand for an item in a text prompt, and
    the id that stands for it in an id prompt and in the ids handed to `splice_items`."""

    modality: str  # "image" | "video"
    texts: tuple[str, ...]
    token_id: int


def _single_token_id(tokenizer: Any, text: str) -> int | None:
    """The id of `text` when the tokenizer encodes it as exactly one token, else None."""
    try:
        ids = tokenizer.encode(text, add_special_tokens=False)
    except Exception:  # noqa: BLE001 - any tokenizer failure just means "not one token"
        return None
    unk = getattr(tokenizer, "unk_token_id", None)
    return int(ids[0]) if len(ids) == 1 and ids[0] != unk else None


def marker_token_ids(tokenizer: Any, markers: Sequence[Marker]) -> dict[int, int] | None:
    """{tokenizer id -> marker id} when the tokenizer knows every marker string as one token
    (whole-text encoding is then exact), None when it does not."""
    mapping: dict[int, int] = {}
    for marker in markers:
        for text in marker.texts:
            tid = _single_token_id(tokenizer, text)
            if tid is None:
                return None
            mapping[tid] = marker.token_id
    return mapping


def _pattern(markers: Sequence[Marker]) -> re.Pattern[str]:
    texts = sorted((t for m in markers for t in m.texts), key=len, reverse=True)
    return re.compile("|".join(re.escape(t) for t in texts))


def count_markers(text: str, marker: Marker) -> int:
    return len(_pattern([marker]).findall(text))


def encode_text(text: str, markers: Sequence[Marker], tokenizer: Any) -> list[int]:
    """Token ids of `text` with each marker string replaced by its marker's id."""
    if tokenizer is None:
        raise ValueError("a text prompt with media needs a tokenizer; send input_ids instead")
    by_text = {t: m.token_id for m in markers for t in m.texts}
    known = marker_token_ids(tokenizer, markers)
    if known is not None:
        return [known.get(t, t) for t in tokenizer.encode(text)]
    ids: list[int] = []
    pieces = _pattern(markers).split(text)
    found = _pattern(markers).findall(text)
    for i, piece in enumerate(pieces):
        if i == 0:
            ids.extend(tokenizer.encode(piece))
        else:
            ids.append(by_text[found[i - 1]])
            if piece:
                ids.extend(tokenizer.encode(piece, add_special_tokens=False))
    return ids


def prompt_ids(
    prompt: str | Sequence[int],
    markers: Sequence[Marker],
    counts: Mapping[str, int],
    tokenizer: Any,
) -> list[int]:
    """Ids of a text or id prompt with one marker id per item of each modality in `counts`,
    markers added in front where the prompt has none (see the module doc)."""
    if isinstance(prompt, str):
        missing = [m for m in markers if counts.get(m.modality) and not count_markers(prompt, m)]
        prefix = "".join(f"{m.texts[0]}\n" * counts[m.modality] for m in missing)
        return encode_text(prefix + prompt, markers, tokenizer)
    ids = list(prompt)
    front: list[int] = []
    for m in markers:
        if counts.get(m.modality) and m.token_id not in ids:
            front.extend([m.token_id] * counts[m.modality])
    if front:
        bos = getattr(tokenizer, "bos_token_id", None) if tokenizer is not None else None
        at = 1 if ids and bos is not None and ids[0] == bos else 0
        ids[at:at] = front
    return ids
