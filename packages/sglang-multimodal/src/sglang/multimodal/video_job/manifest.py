"""The job's unit list: every video under a folder, as sorted relative paths.

Ids are paths relative to the video folder (POSIX separators), not basenames: two folders may
each hold a `clip.mp4`, and a record must say which one it answers. Sorting makes the manifest
the same on every node, which is what lets node r take `manifest[r::K]` without talking to the
others.
"""

from __future__ import annotations

from pathlib import Path

VIDEO_EXTENSIONS = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm"})


def build_manifest(video_dir: Path | str) -> list[str]:
    """Sorted ids of the videos under `video_dir`, recursively (extensions in any case).
    ValueError when the folder does not exist."""
    root = Path(video_dir).expanduser()
    if not root.is_dir():
        raise ValueError(f"--video-dir {str(video_dir)!r} is not a folder")
    ids = [
        path.relative_to(root).as_posix()
        for path in root.rglob("*")
        if path.suffix.lower() in VIDEO_EXTENSIONS and path.is_file()
    ]
    return sorted(ids)


def video_path(video_dir: Path | str, video_id: str) -> str:
    """The file a manifest id names."""
    return str(Path(video_dir).expanduser() / video_id)
