"""Before/after: our offline CPU throughput at two git revisions, measured in one run.

Each revision is checked out into a temporary git worktree; `offline_throughput.py --skip-hf`
(this checkout's copy, so both sides get the same prompts) then runs in a fresh process with that
tree's `src/` folders first on PYTHONPATH. Rounds alternate A, B, A, B, ... so drift in the
machine's load hits both sides alike; the table gives every round and the median.

    python benchmarks/ab_revisions.py --before d62f6b5 --after HEAD --rounds 3 --out ab.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SRC_PACKAGES = ("sglang-lang", "sglang-kernels", "sglang-runtime")


def checkout(rev: str, dest: Path) -> Path:
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(dest), rev],
                   check=True)
    return dest


def run_once(tree: Path, workloads: str, num_prompts: int, output_len: int,
             weights: str = "packed") -> dict:
    env = dict(os.environ)
    paths = [str(tree / "packages" / p / "src") for p in SRC_PACKAGES]
    env["PYTHONPATH"] = os.pathsep.join([*paths, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        out = Path(f.name)
    cmd = [sys.executable, str(ROOT / "benchmarks" / "offline_throughput.py"), "--skip-hf",
           "--workloads", workloads, "--num-prompts", str(num_prompts),
           "--output-len", str(output_len), "--weights", weights, "--out", str(out)]
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
    data = json.loads(out.read_text())
    out.unlink()
    return {name: r["ours"]["tok_per_s"] for name, r in data["results"].items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--before", required=True, help="git revision measured as 'before'")
    p.add_argument("--after", default="HEAD", help="git revision measured as 'after'")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--workloads", default="shared,distinct")
    p.add_argument("--num-prompts", type=int, default=64)
    p.add_argument("--output-len", type=int, default=64)
    p.add_argument("--weights", default="packed", choices=("packed", "float"),
                   help="weight form of ours (offline_throughput.py --weights)")
    p.add_argument("--out", default=None, help="write every round as JSON here")
    args = p.parse_args()

    with tempfile.TemporaryDirectory(prefix="sglang-ab-") as tmp:
        trees = {label: checkout(rev, Path(tmp) / label)
                 for label, rev in (("before", args.before), ("after", args.after))}
        rounds: dict[str, list[dict]] = {"before": [], "after": []}
        try:
            for i in range(args.rounds):
                for label, tree in trees.items():
                    r = run_once(tree, args.workloads, args.num_prompts, args.output_len,
                                 args.weights)
                    rounds[label].append(r)
                    print(f"round {i + 1} {label:6s} " + "  ".join(
                        f"{w} {v:7.1f} tok/s" for w, v in r.items()), flush=True)
        finally:
            for tree in trees.values():
                subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force",
                                str(tree)], check=False)

    names = list(rounds["before"][0])
    print("\n| workload | before median tok/s | after median tok/s | after / before |")
    print("| --- | --- | --- | --- |")
    summary = {}
    for w in names:
        b = statistics.median(r[w] for r in rounds["before"])
        a = statistics.median(r[w] for r in rounds["after"])
        summary[w] = {"before": b, "after": a, "ratio": a / b}
        print(f"| {w} | {b:.1f} | {a:.1f} | {a / b:.3f} |")
    if args.out:
        Path(args.out).write_text(json.dumps(
            {"before": args.before, "after": args.after, "rounds": rounds, "median": summary},
            indent=2))


if __name__ == "__main__":
    main()
