"""Write a weight-less model folder for the GPU suite's `grammar` phase: SmolLM2-135M-Instruct's
config.json and tokenizer files, taken from the embedded GGUF (the GPU machine has no model hub
and no GGUF; this folder is ~4 MB and travels with the call).

    python benchmarks/tokenizer_folder.py            # writes .gpu_assets/grammar_model
    python benchmarks/gpu_suite.py ...               # picks that folder up by default

The grammar phase loads it with `--load-format dummy`, so its weights are drawn at random: what
it measures (mask building, jump-forward, decode-step overhead) depends on the tokenizer and the
grammar, not on the weights.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

DEFAULT_DIR = Path(__file__).resolve().parent.parent / ".gpu_assets" / "grammar_model"


def write_folder(out: Path) -> Path:
    from offline_throughput import gguf_location
    from transformers import AutoConfig, AutoTokenizer

    folder, name = gguf_location()
    out.mkdir(parents=True, exist_ok=True)
    AutoTokenizer.from_pretrained(folder, gguf_file=name).save_pretrained(out)
    config = AutoConfig.from_pretrained(folder, gguf_file=name).to_dict()
    config.pop("quantization_config", None)
    if not config.get("architectures"):  # the GGUF reader leaves it unset
        config["architectures"] = ["LlamaForCausalLM"]
    (out / "config.json").write_text(json.dumps(config, indent=2))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", nargs="?", default=str(DEFAULT_DIR))
    out = write_folder(Path(p.parse_args().out))
    size = sum(f.stat().st_size for f in out.iterdir()) / 1e6
    print(f"wrote {out} ({size:.1f} MB)")


if __name__ == "__main__":
    main()
