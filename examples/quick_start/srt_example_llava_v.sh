#!/usr/bin/env bash
# Caption every video of a folder with a LLaVA-NeXT-Video model, split over K nodes.
#
#   bash examples/quick_start/srt_example_llava_v.sh K NODE_IDX VIDEO_DIR MODEL_PATH FRAMES_PER_VIDEO [job flags...]
#
# The seed's command line, now a thin wrapper over the static split of
# `python -m sglang.multimodal.video_job`: node NODE_IDX (0..K-1) answers manifest[NODE_IDX::K]
# of the sorted video list (remainders included), a bad video becomes an error row, and a rerun
# skips finished videos. Every node writes its records under OUTPUT.records/ (a folder all nodes
# share); the node that completes the list merges them into OUTPUT (CSV: video_name,answer,error),
# or merge by hand once all are done:
#
#   bash examples/quick_start/srt_example_llava_v.sh K 0 VIDEO_DIR MODEL_PATH FRAMES --merge
#
# OUTPUT (default below) and PYTHON may be set in the environment; further flags go to the job
# (`python -m sglang.multimodal.video_job --help`). The same job on a Ray cluster, one Engine per
# GPU pulling from a shared queue:
#
#   python -m sglang.multimodal.video_job --ray-address auto --video-dir VIDEO_DIR \
#       --model-path MODEL_PATH --num-frames FRAMES --output OUTPUT
set -euo pipefail

if [ "$#" -lt 5 ]; then
    echo "usage: $0 K NODE_IDX VIDEO_DIR MODEL_PATH FRAMES_PER_VIDEO [job flags...]" >&2
    exit 2
fi
K=$1
NODE_IDX=$2
VIDEO_DIR=$3
MODEL_PATH=$4
FRAMES_PER_VIDEO=$5
shift 5
OUTPUT=${OUTPUT:-./work_dirs/llava_next_video_inference_results/final_results.csv}

exec "${PYTHON:-python3}" -m sglang.multimodal.video_job \
    --num-nodes "$K" --node-rank "$NODE_IDX" \
    --video-dir "$VIDEO_DIR" --model-path "$MODEL_PATH" --num-frames "$FRAMES_PER_VIDEO" \
    --output "$OUTPUT" "$@"
