"""N-gram speculative decoding against plain decoding: batch-1 greedy, same process, same prompts.

Two workloads, each a few chat prompts generated one at a time (batch 1, temperature 0):
  * copy    - edit or restate a provided text (the answer reuses the prompt's words);
  * no-copy - open questions with nothing in the prompt to copy.

Both engines (plain and `--speculative-algorithm ngram`) live in this process; for every prompt
the two run back to back, in alternating order, each with its radix cache flushed first, so
load drifts hit both alike. Reported per workload: output tokens per second of each, end to end
(prefill included) and decode only (after the first token, from the stream), the speed-ups, the draft acceptance rate (accepted / drafted), the tokens emitted per verify step,
and whether the outputs were identical (they must be: greedy verification is exact).

    python benchmarks/spec_decode.py                          # CPU, the embedded SmolLM2-135M
    python benchmarks/spec_decode.py --model-path /models/Llama-3.1-8B-Instruct --device cuda
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from typing import Any

TEXTS = [
    "The committee met on Tuesday to discuss the budget for the new library. After a long "
    "debate, members agreed to fund the children's section first, then the archive room, and "
    "finally the reading garden behind the main building. The mayor thanked the volunteers.",
    "def total_price(items, tax_rate):\n    subtotal = 0\n    for item in items:\n"
    "        subtotal += item.price * item.quantity\n    tax = subtotal * tax_rate\n"
    "    return subtotal + tax\n",
    "Our store opens at 9 am on weekdays and at 10 am on weekends. Returns are accepted within "
    "30 days with a receipt. Gift cards cannot be exchanged for cash. For questions, call the "
    "front desk or write to the customer service team.",
    "Ingredients: two cups of flour, one cup of sugar, three eggs, half a cup of butter, one "
    "teaspoon of vanilla and a pinch of salt. Mix the dry ingredients, add the eggs and butter, "
    "then bake for thirty minutes at 180 degrees.",
]
COPY_TASKS = [
    "Repeat the following text exactly:\n{text}",
    "Rename the variable `subtotal` to `net` in this code and show the whole function:\n{text}",
    "Fix any typos in the following text and return the full corrected text:\n{text}",
    "Rewrite the following text with every sentence on its own line:\n{text}",
]
NO_COPY = [
    "Write a short story about a lighthouse keeper who finds a message in a bottle.",
    "Explain how vaccines train the immune system, in simple words.",
    "Give five tips for learning a new language as an adult.",
    "Describe a day in the life of a medieval blacksmith.",
]


def chat(tokenizer: Any, text: str) -> str:
    messages = [{"role": "user", "content": text}]
    if getattr(tokenizer, "chat_template", None):
        return str(tokenizer.apply_chat_template(messages, tokenize=False,
                                                 add_generation_prompt=True))
    return f"{text}\n\n"


def workloads(tokenizer: Any) -> dict[str, list[str]]:
    copy = [chat(tokenizer, task.format(text=text)) for task, text in zip(COPY_TASKS, TEXTS)]
    return {"copy": copy, "no-copy": [chat(tokenizer, q) for q in NO_COPY]}


def timed(engine: Any, prompt: str, params: dict[str, Any]
          ) -> tuple[float, float, dict[str, Any]]:
    """(seconds in all, seconds after the first output, the result with `first_tokens`, the
    tokens of that first output): streamed, so the prefill and first output can be told apart
    from the decode that follows."""
    engine.flush_cache()
    start = time.perf_counter()
    first = None
    first_tokens = 0
    ids: list[int] = []
    meta: dict[str, Any] = {}
    for chunk in engine.generate(prompt, params, stream=True):
        if first is None and chunk["output_ids"]:
            first = time.perf_counter()
            first_tokens = len(chunk["output_ids"])
        ids += chunk["output_ids"]
        meta = chunk["meta_info"]
    end = time.perf_counter()
    return end - start, end - (first or end), {"output_ids": ids, "meta_info": meta,
                                                "first_tokens": first_tokens}


def run_workload(engines: dict[str, Any], prompts: list[str], params: dict[str, Any]
                 ) -> dict[str, Any]:
    wall = {name: 0.0 for name in engines}
    decode = {name: 0.0 for name in engines}
    tokens = {name: 0 for name in engines}
    later_tokens = {name: 0 for name in engines}
    drafted = accepted = verify = 0
    identical = 0
    for i, prompt in enumerate(prompts):
        order = list(engines) if i % 2 == 0 else list(reversed(engines))
        outs = {}
        for name in order:
            seconds, after_first, outs[name] = timed(engines[name], prompt, params)
            wall[name] += seconds
            decode[name] += after_first
            tokens[name] += outs[name]["meta_info"]["completion_tokens"]
            later_tokens[name] += (outs[name]["meta_info"]["completion_tokens"]
                                   - outs[name]["first_tokens"])
        meta = outs["ngram"]["meta_info"]
        drafted += meta["spec_draft_tokens"]
        accepted += meta["spec_accepted_tokens"]
        verify += meta["spec_verify_ct"]
        identical += outs["ngram"]["output_ids"] == outs["plain"]["output_ids"]
    rate = {name: tokens[name] / wall[name] for name in engines}
    # Decode only: the tokens after each request's first output, over the time after it.
    later = {name: later_tokens[name] / decode[name] for name in engines}
    return {
        "prompts": len(prompts),
        "output_tokens": tokens["ngram"],
        "plain_tok_s": round(rate["plain"], 2),
        "ngram_tok_s": round(rate["ngram"], 2),
        "speedup": round(rate["ngram"] / rate["plain"], 3),
        "plain_decode_tok_s": round(later["plain"], 2),
        "ngram_decode_tok_s": round(later["ngram"], 2),
        "decode_speedup": round(later["ngram"] / later["plain"], 3),
        "acceptance": round(accepted / drafted, 3) if drafted else 0.0,
        "drafted": drafted,
        "accepted": accepted,
        "verify_steps": verify,
        "identical": f"{identical}/{len(prompts)}",
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model-path", default=None, help="default: the embedded SmolLM2-135M")
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", default="auto")
    p.add_argument("--attention-backend", default="auto")
    p.add_argument("--mem-fraction-static", type=float, default=0.4,
                   help="per engine (two share the device)")
    # The runtime's defaults unless given.
    p.add_argument("--num-draft-tokens", type=int, default=None)
    p.add_argument("--min-window", type=int, default=None)
    p.add_argument("--max-window", type=int, default=None)
    p.add_argument("--max-new-tokens", type=int, default=128)
    p.add_argument("--stream-interval", type=int, default=1,
                   help="both engines: a streamed output every N tokens")
    p.add_argument("--out", default=None, help="also write the results as JSON here")
    args = p.parse_args()

    import sglang as sgl

    load_before = [round(x, 2) for x in os.getloadavg()]
    common = dict(model_path=args.model_path, device=args.device, dtype=args.dtype,
                  attention_backend=args.attention_backend,
                  mem_fraction_static=args.mem_fraction_static, log_level="warning",
                  stream_interval=args.stream_interval)
    plain = sgl.Engine(**common)
    if str(plain._device).startswith("cuda"):
        # On a GPU the fraction bounds all memory in use, the first engine's included.
        common["mem_fraction_static"] = min(0.9, 2 * args.mem_fraction_static)
    spec = {name: value for name, value in (
        ("speculative_num_draft_tokens", args.num_draft_tokens),
        ("speculative_ngram_min_match_window_size", args.min_window),
        ("speculative_ngram_max_match_window_size", args.max_window)) if value is not None}
    engines = {"plain": plain,
               "ngram": sgl.Engine(**common, speculative_algorithm="ngram", **spec)}
    ngram_args = engines["ngram"].args
    params = {"temperature": 0, "max_new_tokens": args.max_new_tokens}
    try:
        prompts = workloads(engines["plain"].tokenizer)
        for engine in engines.values():  # warm-up (first-call allocations, kernel caches)
            engine.generate(prompts["no-copy"][0], {"temperature": 0, "max_new_tokens": 8})
        results = {name: run_workload(engines, ps, params) for name, ps in prompts.items()}
    finally:
        for engine in engines.values():
            engine.shutdown()
    report = {
        "model": args.model_path or "SmolLM2-135M-Instruct (embedded)",
        "device": args.device, "machine": platform.node(), "cpus": os.cpu_count(),
        "load_average_before_after": [load_before, [round(x, 2) for x in os.getloadavg()]],
        "num_draft_tokens": ngram_args.speculative_num_draft_tokens,
        "windows": [ngram_args.speculative_ngram_min_match_window_size,
                    ngram_args.speculative_ngram_max_match_window_size],
        "max_new_tokens": args.max_new_tokens, "stream_interval": args.stream_interval,
        "results": results,
    }
    print(json.dumps(report, indent=2))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(report, f, indent=2)


if __name__ == "__main__":
    main()
