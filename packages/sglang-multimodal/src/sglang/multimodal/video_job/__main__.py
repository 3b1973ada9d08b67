"""`python -m sglang.multimodal.video_job ...`: see `cli`."""

from sglang.multimodal.video_job.cli import main

raise SystemExit(main())
