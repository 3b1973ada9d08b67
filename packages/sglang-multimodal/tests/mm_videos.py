"""Synthetic videos for the tests, written with PyAV: frame i is a flat grey of value i * STEP,
so each decoded or sampled frame tells which index it was."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

av = pytest.importorskip("av")

STEP = 8  # grey levels between consecutive frames: lossy codecs stay well within +-STEP/2
SIDE = 32

# name -> (file suffix, container format, codec, encoder options)
FORMATS = {
    "mp4-h264": (".mp4", "mp4", "libx264", {"crf": "0", "bf": "2"}),
    "mp4-mpeg4": (".mp4", "mp4", "mpeg4", {"qscale": "1"}),
    "mkv-h264": (".mkv", "matroska", "libx264", {"crf": "0", "bf": "2"}),
    "webm-vp8": (".webm", "webm", "libvpx", {"crf": "4", "b": "4M"}),
    "webm-vp9": (".webm", "webm", "libvpx-vp9", {"crf": "4", "b": "4M"}),
}


def write_video(path: Path, fmt: str, num: int, pts_ms: list[int] | None = None) -> Path:
    """`num` flat frames (frame i = grey i * STEP); `pts_ms` gives each frame's timestamp in
    milliseconds (a variable frame rate) instead of 25 fps."""
    _, container_fmt, codec, options = FORMATS[fmt]
    if codec not in av.codecs_available:
        pytest.skip(f"PyAV has no {codec} encoder here")
    with av.open(str(path), "w", format=container_fmt) as out:
        stream = out.add_stream(codec, rate=25, options=dict(options))
        stream.width = stream.height = SIDE
        stream.pix_fmt = "yuv420p"
        if pts_ms is not None:
            stream.codec_context.time_base = Fraction(1, 1000)
        for i in range(num):
            frame = av.VideoFrame.from_ndarray(
                np.full((SIDE, SIDE, 3), i * STEP, np.uint8), format="rgb24"
            )
            if pts_ms is not None:
                frame.pts, frame.time_base = pts_ms[i], Fraction(1, 1000)
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


def frame_ids(frames: np.ndarray) -> list[int]:
    return [int(round(float(f.mean()) / STEP)) for f in frames]
