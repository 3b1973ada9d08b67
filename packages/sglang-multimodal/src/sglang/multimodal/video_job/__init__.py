"""Batch video jobs: answer one prompt for every video of a folder, exactly once per video.

`python -m sglang.multimodal.video_job --video-dir DIR --model-path M --output out.csv` builds a
sorted manifest of the folder's videos (`manifest`), hands batches of them to answerers
(`answer`: the offline Engine, or any `module:factory`), and commits one record per finished
video to an append-only log (`records`) that `merge` folds into the output file. Work is spread
statically over nodes (`static`: `--num-nodes/--node-rank` or torchrun's environment) or pulled
from a shared queue by Ray actors (`ray_pool`). Records are keyed by video id, never by rank or
worker, which is what makes a crash, a restart or a second node safe: the reader keeps one record
per id, and the merge names any manifest id that has none.
"""
