"""Synthetic videos for the video-job tests: tiny MPEG-4 files written with PyAV, and files that
look like videos but are not."""

from __future__ import annotations

from pathlib import Path

import numpy as np

SIDE = 32


def write_video(path: Path, seed: int, frames: int = 8) -> Path:
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=8)
        stream.width = stream.height = SIDE
        stream.pix_fmt = "yuv420p"
        # A colour of its own plus noise: videos differ even after a model averages frames.
        base = rng.integers(0, 256, (1, 1, 3))
        for _ in range(frames):
            noise = rng.integers(-40, 41, (SIDE, SIDE, 3))
            pixels = np.clip(base + noise, 0, 255).astype(np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def write_corrupt(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x00\x00\x00\x18ftypmp42 this is not a video at all" * 4)
    return path


def video_folder(root: Path, count: int, corrupt: tuple[int, ...] = ()) -> list[str]:
    """`count` videos under `root`, some in a subfolder and two sharing a basename (ids are
    relative paths); the indices in `corrupt` are garbage. Returns the expected sorted ids."""
    ids = []
    for i in range(count):
        sub = "more/" if i % 3 == 2 else ""
        name = f"{sub}clip{i:02d}.mp4" if i != 1 else "more/clip00.mp4"
        writer = write_corrupt if i in corrupt else (lambda p, i=i: write_video(p, seed=i))
        writer(root / name)
        ids.append(name)
    return sorted(ids)
