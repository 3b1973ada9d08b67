"""fork/join: expand several tips in parallel from one shared prefix, then summarize.

Run: python examples/quick_start/fork.py
"""

from __future__ import annotations

from typing import Any

import sglang as sgl

# This folder's helper (a script's folder is on sys.path): a running server named by
# SGLANG_ENDPOINT, or a local sgl.Runtime() started on the embedded model.
from _backend import start_backend  # isort: skip


@sgl.function
def tip_suggestion(s: Any, topic: str) -> None:
    s += f"Here are two short tips about {topic}: 1. Sleep well. 2. Eat vegetables.\n"
    forks = s.fork(2)  # each fork starts from the text so far; the server shares its KV cache
    for i, f in enumerate(forks):
        f += f"Now, expand tip {i + 1} into a sentence:" + sgl.gen(
            "detail", stop="\n", max_tokens=32)
    forks.join()  # wait for the forks; s["detail"] becomes the list of their results
    s += "Tip 1: " + forks[0]["detail"].strip() + "\n"
    s += "Tip 2: " + forks[1]["detail"].strip() + "\n"
    s += "In summary," + sgl.gen("summary", stop="\n", max_tokens=32)


def main() -> None:
    backend, runtime = start_backend()
    try:
        sgl.set_default_backend(backend)
        state = tip_suggestion.run(topic="staying healthy", temperature=0)
        print(state.text())
        print("details:", state["detail"])
    finally:
        if runtime is not None:
            runtime.shutdown()


if __name__ == "__main__":
    main()
