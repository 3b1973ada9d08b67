"""The SGLang README's streaming example: print the answer as it is generated.

Run: python examples/quick_start/streaming.py
"""

from __future__ import annotations

from typing import Any

import sglang as sgl

# This folder's helper (a script's folder is on sys.path): a running server named by
# SGLANG_ENDPOINT, or a local sgl.Runtime() started on the embedded model.
from _backend import start_backend  # isort: skip


@sgl.function
def text_qa(s: Any, question: str) -> None:
    s += "Q: " + question + "\n"
    s += "A:" + sgl.gen("answer", stop="\n")


def main() -> None:
    backend, runtime = start_backend()
    try:
        sgl.set_default_backend(backend)
        state = text_qa.run(
            question="What is the capital of France?", temperature=0, stream=True
        )
        # text_iter() yields the whole program's text piece by piece; flush so it shows live.
        for out in state.text_iter():
            print(out, end="", flush=True)
        print()
        # text_iter("answer") yields only the pieces of one variable.
        state = text_qa.run(question="What is the capital of Japan?", temperature=0, stream=True)
        for out in state.text_iter("answer"):
            print(out, end="", flush=True)
        print()
    finally:
        if runtime is not None:
            runtime.shutdown()


if __name__ == "__main__":
    main()
