"""Offline engine demo: sgl.Engine on the embedded default model (SmolLM2-135M-Instruct).

    pip install nox && nox -s demo        # or: python examples/offline_engine.py

The prompts share a long prefix. The first request puts it into the radix cache; the batch that
follows reuses it, which `meta_info["cached_tokens"]` shows.
"""

from __future__ import annotations

import time

import sglang as sgl

PREFIX = (
    "You are a concise geography tutor. Answer with one short sentence and do not add "
    "anything else.\n\n"
)
PROMPTS = [
    PREFIX + "The capital of France is",
    PREFIX + "The capital of Japan is",
    PREFIX + "The longest river in Africa is",
    PREFIX + "The highest mountain in the world is",
]
SAMPLING_PARAMS = {"temperature": 0, "max_new_tokens": 32}


def show(prompts: list[str], outs: list[dict]) -> None:
    for prompt, out in zip(prompts, outs):
        meta = out["meta_info"]
        question = prompt[len(PREFIX) :]
        print(f"{question!r} -> {out['text'].strip()!r}")
        print(
            f"    prompt_tokens={meta.get('prompt_tokens')} "
            f"cached_tokens={meta.get('cached_tokens')} "
            f"completion_tokens={meta.get('completion_tokens')}"
        )


def main() -> None:
    t0 = time.perf_counter()
    llm = sgl.Engine()  # embedded default model
    print(f"engine ready in {time.perf_counter() - t0:.1f} s")
    try:
        # 1) One request: its prompt (and so the shared prefix) enters the radix cache.
        t0 = time.perf_counter()
        first = llm.generate(PROMPTS[:1], SAMPLING_PARAMS)
        print(f"\n-- first request ({time.perf_counter() - t0:.2f} s)")
        show(PROMPTS[:1], first)

        # 2) The batch: every prompt reuses the cached prefix (cached_tokens > 0).
        t0 = time.perf_counter()
        outs = llm.generate(PROMPTS, SAMPLING_PARAMS)
        print(f"\n-- batch of {len(PROMPTS)} ({time.perf_counter() - t0:.2f} s)")
        show(PROMPTS, outs)
    finally:
        llm.shutdown()


if __name__ == "__main__":
    main()
