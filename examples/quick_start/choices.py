"""select: let the model choose among fixed options (scored by normalized logprob, no sampling).

Run: python examples/quick_start/choices.py
"""

from __future__ import annotations

from typing import Any

import sglang as sgl

# This folder's helper (a script's folder is on sys.path): a running server named by
# SGLANG_ENDPOINT, or a local sgl.Runtime() started on the embedded model.
from _backend import start_backend  # isort: skip


@sgl.function
def tool_use(s: Any, question: str) -> None:
    s += "To answer this question: " + question + ", "
    s += "I need to use a " + sgl.select("tool", choices=["calculator", "search engine"]) + ". "
    if s["tool"] == "calculator":  # reading a variable waits for it, so programs can branch
        s += "The math expression is" + sgl.gen("expression", stop="\n", max_tokens=24)
    else:
        s += "The search query is" + sgl.gen("query", stop="\n", max_tokens=24)


def main() -> None:
    backend, runtime = start_backend()
    try:
        sgl.set_default_backend(backend)
        for question in ["What is 37 times 91?", "Who won the 1998 football World Cup?"]:
            state = tool_use.run(question=question, temperature=0)
            print(state.text())
            print("tool:", state["tool"])
    finally:
        if runtime is not None:
            runtime.shutdown()


if __name__ == "__main__":
    main()
