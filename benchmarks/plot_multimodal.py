"""Turn multimodal_bench.py's JSON into one PNG for docs/: video QA (ours, transformers, the FLOP
ceiling) and image QA (with and without the radix cache).

    python benchmarks/plot_multimodal.py multimodal.json --out docs/multimodal.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("results")
    p.add_argument("--out", required=True)
    args = p.parse_args()
    data = json.loads(Path(args.results).read_text())

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    video = data["video"]
    bars = {"sglang Engine": video["ours"]["videos_per_s"],
            "transformers generate": video["transformers"]["videos_per_s"],
            "FLOP ceiling": video["ceiling_videos_per_s"]}
    left.bar(list(bars), list(bars.values()), color=["#1f77b4", "#ff7f0e", "#bbbbbb"])
    for i, v in enumerate(bars.values()):
        left.text(i, v, f"{v:.2f}", ha="center", va="bottom")
    left.set_ylabel("videos / s")
    left.set_title(f"LLaVA-NeXT-Video-7B shape, {video['ours']['prompt_tokens']}-token prompts\n"
                   "16 frames, 32 new tokens, bf16")
    image = data["image"]
    bars = {"radix cache": image["radix_cache"]["questions_per_s"],
            "--disable-radix-cache": image["no_radix_cache"]["questions_per_s"]}
    right.bar(list(bars), list(bars.values()), color=["#1f77b4", "#9ecae1"])
    for i, v in enumerate(bars.values()):
        right.text(i, v, f"{v:.1f}", ha="center", va="bottom")
    right.set_ylabel("image questions / s")
    right.set_title(f"LLaVA-1.5-7B shape: {image['questions']} questions over "
                    f"{image['images']} images")
    fig.suptitle(f"{data['device']}, {data['date'][:16]} UTC")
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)


if __name__ == "__main__":
    main()
