"""`python -m sglang.multimodal.video_job ...`: see `cli`."""

from sglang.multimodal.video_job.cli import main

# Guarded: with --tp > 1 the Engine spawns rank processes, which import this module again.
if __name__ == "__main__":
    raise SystemExit(main())
