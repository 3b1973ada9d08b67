"""Videos from a path or bytes to `num_frames` RGB frames sampled uniformly over the frames that
actually decode (torch-free; PyAV does the demuxing and decoding).

Container metadata is not trusted: PyAV reports 0 frames for WebM/MKV and variable-frame-rate
files carry counts and durations that do not match what decodes. So the count comes from the
file itself, in the cheapest way that is still exact:

1. a demux pass counts the video stream's packets (no decoding: fast). For the codecs LLaVA
   users feed (H.264, HEVC, MPEG-4, VP8/VP9, AV1) one packet is one displayed frame, but not
   for every codec and muxer (packed B-frames in old AVI files, VP9 superframes split oddly,
   dropped corrupt packets), so this count is only a guess;
2. one decoding pass keeps the frames at the indices sampled for that count, converting only
   those to arrays, and counts every frame it decodes;
3. if the decoded count differs from the guess, the indices are sampled again for the true
   count and a second decoding pass keeps those. If the guess is below `num_frames`, a counting
   decode runs first, so a short guess never refuses a long enough video.

The usual cost is one demux pass plus one decode pass, and the frames are always exactly those
at `linspace(0, total - 1, num_frames)` (truncated to ints, as SGLang and transformers do) of the
frames a decoder produces, in presentation order."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

from sglang.protocol.media import MediaRef, VideoRef
from sglang.runtime.multimodal.media import describe, load_media_bytes


def sample_indices(total: int, num_frames: int) -> list[int]:
    """`num_frames` indices spread evenly over `total` frames, first and last included.
    ValueError when the video has fewer frames than asked for."""
    if num_frames < 1:
        raise ValueError(f"num_frames must be at least 1, got {num_frames}")
    if total < num_frames:
        raise ValueError(
            f"the video has {total} frames, fewer than the {num_frames} frames asked for"
        )
    # dtype=int truncates toward zero, which is floor here (all values are >= 0).
    return np.linspace(0, total - 1, num_frames, dtype=int).tolist()


class VideoSource:
    """A video reference opened on demand: a file is re-opened from disk for each pass; bytes
    (and base64, data URIs, URLs) are loaded once and read from memory."""

    def __init__(self, ref: MediaRef) -> None:
        self.ref = ref
        self.name = describe(ref)
        path = os.path.expanduser(ref) if isinstance(ref, str) else None
        self._path = path if path is not None and os.path.isfile(path) else None
        self._data = None if self._path is not None else load_media_bytes(ref)

    @contextmanager
    def open(self) -> Iterator[tuple[Any, Any]]:
        """(container, its first video stream); ValueError naming the problem."""
        import av

        try:
            container = av.open(self._path if self._path is not None else io.BytesIO(self._data))
        except (av.error.FFmpegError, OSError, ValueError) as e:  # type: ignore[attr-defined]
            raise ValueError(f"cannot read video {self.name}: {e}") from e
        try:
            if not container.streams.video:
                raise ValueError(f"{self.name} holds no video stream")
            yield container, container.streams.video[0]
        finally:
            container.close()

    def count_packets(self) -> int:
        """Video packets that carry data: a cheap guess at the frame count (see the module)."""
        import av

        with self.open() as (container, stream):
            try:
                return sum(1 for p in container.demux(stream) if p.size > 0)
            except (av.error.FFmpegError, ValueError) as e:  # type: ignore[attr-defined]
                raise ValueError(f"cannot read video {self.name}: {e}") from e

    def decode(self, keep: Sequence[int]) -> tuple[dict[int, np.ndarray], int]:
        """({index: HxWx3 uint8 frame} for the indices in `keep`, number of frames decoded)."""
        import av

        wanted = set(keep)
        frames: dict[int, np.ndarray] = {}
        count = 0
        with self.open() as (container, stream):
            stream.thread_type = "AUTO"  # frame + slice threads: decoding dominates the cost
            try:
                for frame in container.decode(stream):
                    if count in wanted:
                        frames[count] = frame.to_ndarray(format="rgb24")
                    count += 1
            except (av.error.FFmpegError, ValueError) as e:  # type: ignore[attr-defined]
                raise ValueError(f"cannot decode video {self.name}: {e}") from e
        return frames, count


def read_frames(ref: MediaRef, num_frames: int) -> np.ndarray:
    """[num_frames, H, W, 3] uint8: the frames at `sample_indices(total, num_frames)` of the
    decoded video. ValueError for unreadable videos and videos with fewer frames than asked."""
    if num_frames < 1:
        raise ValueError(f"num_frames must be at least 1, got {num_frames}")
    source = VideoSource(ref)
    total, exact = source.count_packets(), False
    for _ in range(3):  # guess, then at most one correction: decoding is deterministic
        if total < num_frames and not exact:
            total, exact = source.decode(())[1], True
            continue
        if total == 0:
            raise ValueError(f"{source.name} has no decodable video frames")
        try:
            indices = sample_indices(total, num_frames)
        except ValueError as e:
            raise ValueError(f"video {source.name}: {e}") from None
        frames, decoded = source.decode(indices)
        if decoded == total:
            shapes = {frames[i].shape for i in indices}
            if len(shapes) > 1:
                raise ValueError(f"video {source.name} changes frame size mid-stream "
                                 f"({', '.join(f'{s[1]}x{s[0]}' for s in sorted(shapes))})")
            return np.stack([frames[i] for i in indices])
        total, exact = decoded, True
    raise ValueError(f"video {source.name} decodes to a different frame count on every pass")



def video_request(entry: object, default_frames: int) -> tuple[MediaRef, int]:
    """(media reference, frames to sample) of one `video_data` entry, in any form the protocol
    allows (`VideoRef.parse`: a reference alone takes `default_frames`)."""
    ref = VideoRef.parse(entry)
    return ref.source, ref.num_frames if ref.num_frames is not None else default_frames
