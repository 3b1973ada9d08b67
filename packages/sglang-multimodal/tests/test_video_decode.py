"""Video decoding and uniform frame sampling on videos written with PyAV (mm_videos), whose frame i is
a flat grey of value i * STEP, so each sampled frame tells which index it was."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

av = pytest.importorskip("av")

from mm_videos import FORMATS, SIDE, frame_ids, write_video  # noqa: E402

from sglang.multimodal.processors import video as video_mod  # noqa: E402
from sglang.multimodal.processors.video import (  # noqa: E402
    VideoSource,
    read_frames,
    sample_indices,
)


def test_sample_indices_are_truncated_linspace() -> None:
    assert sample_indices(10, 4) == [0, 3, 6, 9]
    assert sample_indices(100, 8) == [0, 14, 28, 42, 56, 70, 84, 99]
    assert sample_indices(5, 5) == [0, 1, 2, 3, 4]
    assert sample_indices(7, 1) == [0]
    for total, n in [(30, 8), (31, 7), (1000, 16)]:
        assert sample_indices(total, n) == np.linspace(0, total - 1, n).astype(int).tolist()
    with pytest.raises(ValueError, match="has 3 frames, fewer than the 4 frames asked"):
        sample_indices(3, 4)


@pytest.mark.parametrize("fmt", sorted(FORMATS))
@pytest.mark.parametrize("num_frames", [1, 8, 30])
def test_sampled_frames_are_the_expected_indices(
    tmp_path: Path, fmt: str, num_frames: int
) -> None:
    total = 30
    path = write_video(tmp_path / f"v{FORMATS[fmt][0]}", fmt, total)
    frames = read_frames(str(path), num_frames)
    assert frames.shape == (num_frames, SIDE, SIDE, 3) and frames.dtype == np.uint8
    assert frame_ids(frames) == sample_indices(total, num_frames)


def test_bytes_and_base64_inputs(tmp_path: Path) -> None:
    import base64

    data = write_video(tmp_path / "v.mp4", "mp4-h264", 20).read_bytes()
    want = sample_indices(20, 6)
    assert frame_ids(read_frames(data, 6)) == want
    assert frame_ids(read_frames(f"data:video/mp4;base64,{base64.b64encode(data).decode()}", 6)) \
        == want


def test_variable_frame_rate(tmp_path: Path) -> None:
    # Bursts of frames 5 ms apart and gaps of 400 ms: the container's rate says nothing useful.
    pts, t = [], 0
    for i in range(24):
        pts.append(t)
        t += 5 if i % 3 else 400
    for fmt in ("mp4-h264", "mkv-h264"):
        path = write_video(tmp_path / f"vfr{FORMATS[fmt][0]}", fmt, 24, pts_ms=pts)
        assert frame_ids(read_frames(str(path), 8)) == sample_indices(24, 8)


@pytest.mark.parametrize("wrong", [5, 29, 31, 60])
def test_a_wrong_packet_count_is_corrected_by_decoding(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, wrong: int
) -> None:
    path = write_video(tmp_path / "v.mkv", "mkv-h264", 30)
    monkeypatch.setattr(VideoSource, "count_packets", lambda self: wrong)
    passes: list[int] = []
    real_decode = VideoSource.decode

    def counting_decode(self: VideoSource, keep: list[int]) -> tuple[dict, int]:
        passes.append(len(keep))
        return real_decode(self, keep)

    monkeypatch.setattr(VideoSource, "decode", counting_decode)
    assert frame_ids(read_frames(str(path), 8)) == sample_indices(30, 8)
    assert len(passes) == 2  # the guessed pass (or a count-only pass), then the exact one


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_exact_packet_count_needs_one_decode_pass(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fmt: str
) -> None:
    # B-frames (x264 bf=2), VP9 superframes: still one packet per shown frame.
    path = write_video(tmp_path / f"v{FORMATS[fmt][0]}", fmt, 30)
    calls: list[int] = []
    real_decode = VideoSource.decode
    monkeypatch.setattr(VideoSource, "decode",
                        lambda self, keep: calls.append(1) or real_decode(self, keep))
    read_frames(str(path), 4)
    assert calls == [1]


def test_fewer_frames_than_asked(tmp_path: Path) -> None:
    path = write_video(tmp_path / "short.webm", "webm-vp8", 5)
    with pytest.raises(ValueError, match="has 5 frames, fewer than the 8 frames asked for"):
        read_frames(str(path), 8)


@pytest.mark.parametrize(
    ("ref", "match"),
    [
        (b"definitely not a video container", "cannot read video"),
        (b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 64, "cannot read video|no decodable|no video"),
        ("/no/such/video.mp4", "does not exist"),
    ],
)
def test_unreadable_videos_are_value_errors(ref: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        read_frames(ref, 4)  # type: ignore[arg-type]


def test_audio_only_file_has_no_video_stream(tmp_path: Path) -> None:
    path = tmp_path / "a.wav"
    with av.open(str(path), "w", format="wav") as out:
        stream = out.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16",
                                           layout="mono")
        frame.rate = 8000
        out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    with pytest.raises(ValueError, match="no video stream"):
        read_frames(str(path), 1)


def test_num_frames_must_be_positive() -> None:
    with pytest.raises(ValueError, match="num_frames must be at least 1"):
        video_mod.read_frames(b"x", 0)


def test_frame_size_change_mid_stream_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_video(tmp_path / "v.mp4", "mp4-h264", 10)
    real_decode = VideoSource.decode

    def resized(self: VideoSource, keep: list[int]) -> tuple[dict, int]:
        frames, count = real_decode(self, keep)
        if frames:  # as a stream whose later frames are half the size would decode
            last = max(frames)
            frames[last] = frames[last][::2, ::2]
        return frames, count

    monkeypatch.setattr(VideoSource, "decode", resized)
    with pytest.raises(ValueError, match="changes frame size mid-stream"):
        read_frames(str(path), 4)
