"""Multi-turn chat with roles; the server's chat template (SmolLM2: ChatML) formats the turns.

Run: python examples/quick_start/chat.py
"""

from __future__ import annotations

from typing import Any

import sglang as sgl

# This folder's helper (a script's folder is on sys.path): a running server named by
# SGLANG_ENDPOINT, or a local sgl.Runtime() started on the embedded model.
from _backend import start_backend  # isort: skip


@sgl.function
def multi_turn_question(s: Any, question_1: str, question_2: str) -> None:
    s += sgl.system("You are a helpful assistant.")
    s += sgl.user(question_1)
    s += sgl.assistant(sgl.gen("answer_1", max_tokens=64))
    s += sgl.user(question_2)
    s += sgl.assistant(sgl.gen("answer_2", max_tokens=64))


def main() -> None:
    backend, runtime = start_backend()
    try:
        sgl.set_default_backend(backend)
        state = multi_turn_question.run(
            question_1="What is the capital of the United States?",
            question_2="List two local attractions.",
            temperature=0,
        )
        for message in state.messages():
            print(message["role"], ":", message["content"])
        print()
        print(state.text())  # the rendered prompt, in the model's chat format
    finally:
        if runtime is not None:
            runtime.shutdown()


if __name__ == "__main__":
    main()
