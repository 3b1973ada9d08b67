"""Few-shot prompting: a handful of worked examples, then the question.

Run: python examples/quick_start/few_shot.py
"""

from __future__ import annotations

from typing import Any

import sglang as sgl

# This folder's helper (a script's folder is on sys.path): a running server named by
# SGLANG_ENDPOINT, or a local sgl.Runtime() started on the embedded model.
from _backend import start_backend  # isort: skip

EXAMPLES = [
    ("What color is grass?", "Green"),
    ("What animal says meow?", "Cat"),
    ("What is frozen water called?", "Ice"),
]


@sgl.function
def few_shot_qa(s: Any, question: str) -> None:
    s += "Answer each question with one word.\n"
    for q, a in EXAMPLES:
        s += f"Q: {q}\nA: {a}\n"
    s += "Q: " + question + "\nA:" + sgl.gen("answer", stop="\n", max_tokens=16)


def main() -> None:
    backend, runtime = start_backend()
    try:
        sgl.set_default_backend(backend)
        # The shared examples are one prefix: run_batch caches it once for all the questions.
        states = few_shot_qa.run_batch(
            [{"question": "What color is the sky on a clear day?"},
             {"question": "What animal barks?"}],
            temperature=0,
        )
        for state in states:
            print(repr(state["answer"]))
        print(states[0].text())
    finally:
        if runtime is not None:
            runtime.shutdown()


if __name__ == "__main__":
    main()
