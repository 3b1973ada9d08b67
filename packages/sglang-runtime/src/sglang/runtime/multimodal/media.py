"""Media references to bytes and images (torch-free; Pillow is imported only to decode).

Every failure is a ValueError whose message names the reference and the problem, so a server
can answer it with a 400."""

from __future__ import annotations

import base64
import binascii
import os
import re
from typing import Any

from sglang.protocol.media import MediaRef
from sglang.runtime.multimodal.fetch import fetch_url, is_url

# Longest part of a reference quoted in an error message.
_QUOTE = 60
# "scheme://": a URL, not a path (Windows drive letters have one letter and no "//").
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+)://")


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
    """The encoded bytes a reference names: raw bytes as given, a `data:...;base64,` URI, an
    http(s) URL (fetched within fetch.py's time and size limits), a file path, or a raw base64
    string."""
    if isinstance(ref, bytes | bytearray | memoryview):
        data = bytes(ref)
    elif not isinstance(ref, str):
        raise ValueError(f"a media reference must be a string or bytes, not {type(ref).__name__}")
    elif ref.startswith("data:"):
        data = _data_uri(ref)
    elif is_url(ref):
        data = fetch_url(ref)
    elif (scheme := _SCHEME.match(ref)) is not None:
        raise ValueError(
            f"unsupported URL scheme {scheme.group(1)!r} in {describe(ref)}: media may be an "
            f"http(s) URL, a data URI, a file path, base64 or bytes"
        )
    elif os.path.isdir(os.path.expanduser(ref)):
        raise ValueError(f"media path {describe(ref)} is a directory, not a file")
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
            if 0 in img.size:
                raise ValueError(f"image {describe(ref)} has zero size {img.size}")
            return img.convert("RGB")
    except UnidentifiedImageError as e:
        raise ValueError(
            f"cannot decode image {describe(ref)}: not an image format Pillow reads, or its "
            f"header is corrupt or cut short"
        ) from e
    except Image.DecompressionBombError as e:
        raise ValueError(f"image {describe(ref)} is too large to decode: {e}") from e
    except ValueError:
        raise
    except Exception as e:  # any other failure on untrusted bytes is bad media, not a crash
        raise ValueError(f"cannot decode image {describe(ref)}: {e}") from e
