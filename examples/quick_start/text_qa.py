"""The SGLang README's first program: question answering, batched.

Run: python examples/quick_start/text_qa.py
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
        states = text_qa.run_batch(
            [
                {"question": "What is the capital of the United Kingdom?"},
                {"question": "What is the capital of France?"},
                {"question": "What is the capital of Japan?"},
            ],
            progress_bar=True,
            temperature=0,
        )
        for state in states:
            print(state.text())
    finally:
        if runtime is not None:
            runtime.shutdown()


if __name__ == "__main__":
    main()
