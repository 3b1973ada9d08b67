"""Media references to bytes and images (torch-free; Pillow is imported only to decode).

Every failure is a ValueError whose message names the reference and the problem, so a server
can answer it with a 400."""

from __future__ import annotations

import base64
import binascii
import os
from typing import Any

from sglang.protocol.media import MediaRef

# Longest part of a reference quoted in an error message.
_QUOTE = 60


def describe(ref: MediaRef) -> str:
    if isinstance(ref, bytes):
        return f"<{len(ref)} bytes>"
    return repr(ref if len(ref) <= _QUOTE else ref[:_QUOTE] + "...")


def _b64(payload: str, what: str) -> bytes:
    try:
        # validate=True: a typo'd path must not decode as garbage base64.
        return base64.b64decode("".join(payload.split()), validate=True)
    except (binascii.Error, ValueError) as e:
        raise ValueError(f"{what} is not valid base64: {e}") from e


def _data_uri(ref: str) -> bytes:
    header, sep, payload = ref.partition(",")
    if not sep:
        raise ValueError(f"data URI {describe(ref)} has no ',' before its payload")
    if not header.endswith(";base64"):
        raise ValueError(f"data URI {describe(ref)} must be base64-encoded (data:<mime>;base64,...)")
    return _b64(payload, f"the payload of data URI {describe(ref)}")


def _looks_like_path(ref: str) -> bool:
    # Base64 has no '.', '\\' or '~'; a leading '/' alone is ambiguous, so it counts as a path.
    return ref.startswith(("/", "~", "./", "../")) or "." in ref or "\\" in ref


def load_media_bytes(ref: MediaRef) -> bytes:
    """The encoded bytes a reference names: raw bytes as given, a `data:...;base64,` URI, a file
    path, or a raw base64 string. http(s) URLs are refused: this runtime does not fetch."""
    if isinstance(ref, bytes | bytearray | memoryview):
        data = bytes(ref)
    elif not isinstance(ref, str):
        raise ValueError(f"a media reference must be a string or bytes, not {type(ref).__name__}")
    elif ref.startswith("data:"):
        data = _data_uri(ref)
    elif ref.startswith(("http://", "https://")):
        raise ValueError(
            f"cannot fetch {describe(ref)}: this runtime does not download media; pass a file "
            f"path, base64 or a data URI"
        )
    elif os.path.isfile(os.path.expanduser(ref)):
        try:
            with open(os.path.expanduser(ref), "rb") as f:
                data = f.read()
        except OSError as e:
            raise ValueError(f"cannot read media file {describe(ref)}: {e}") from e
    elif _looks_like_path(ref):
        raise ValueError(f"media file {describe(ref)} does not exist")
    else:
        data = _b64(ref, f"media reference {describe(ref)} (neither a file nor a data URI)")
    if not data:
        raise ValueError(f"media reference {describe(ref)} is empty")
    return data


def load_image(ref: MediaRef) -> Any:
    """A PIL RGB image from a reference; ValueError when it cannot be read or decoded."""
    data = load_media_bytes(ref)
    try:
        import io

        from PIL import Image, UnidentifiedImageError
    except ImportError as e:  # pragma: no cover - pillow is a test/extra dependency
        raise ValueError("decoding images needs Pillow: pip install pillow") from e
    try:
        with Image.open(io.BytesIO(data)) as img:
            return img.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise ValueError(f"cannot decode image {describe(ref)}: {e}") from e
