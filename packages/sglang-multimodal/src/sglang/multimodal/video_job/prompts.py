"""The prompt each video is asked: `--prompt`, or a per-video prompts file, inside a template.

The template carries the model's video token and turn markers (`{prompt}` marks where the
question goes), since the job talks to the Engine, which applies no chat template.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

# The seed's question, so its wrapper keeps asking what it asked.
DEFAULT_PROMPT = (
    "Please provide a detailed description of the video, focusing on the main subjects, their "
    "actions, the background scenes."
)
# LLaVA-NeXT-Video's conversation format (vicuna style: "USER: <video>\n... ASSISTANT:").
DEFAULT_TEMPLATE = "USER: <video>\n{prompt} ASSISTANT:"
PROMPT_SLOT = "{prompt}"


def _mapping_rows(path: Path) -> list[dict[str, str]]:
    if path.suffix.lower() == ".csv":
        with open(path, newline="") as f:
            return list(csv.DictReader(f))
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def load_prompts(path: Path | None) -> tuple[str | None, dict[str, str]]:
    """A prompts file: a .csv or .jsonl of `video_name,prompt` rows (one prompt per video), or any
    other file whose whole text is the one prompt. Returns (the prompt for all, per video)."""
    if path is None:
        return None, {}
    if path.suffix.lower() not in (".csv", ".jsonl"):
        return path.read_text().strip(), {}
    out: dict[str, str] = {}
    for n, row in enumerate(_mapping_rows(path), 1):
        if not isinstance(row, dict) or "video_name" not in row or "prompt" not in row:
            raise ValueError(f"{path}: row {n} needs 'video_name' and 'prompt'")
        out[str(row["video_name"])] = str(row["prompt"])
    return None, out


class Prompter:
    def __init__(self, prompt: str, template: str, per_video: dict[str, str]) -> None:
        if PROMPT_SLOT not in template:
            raise ValueError(f"--prompt-template must contain {PROMPT_SLOT}")
        self.prompt = prompt
        self.template = template
        self.per_video = per_video

    def __call__(self, video_id: str) -> str:
        # str.replace, not format: a question may hold braces of its own.
        return self.template.replace(PROMPT_SLOT, self.per_video.get(video_id, self.prompt))
