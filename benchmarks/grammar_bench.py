"""Structured-output benchmark: JSON-schema decoding with and without jump-forward, and the cost
of grammar masks per decode step against unconstrained decoding.

Workloads (greedy, one `generate` call each, a cold prefix cache before every run):
  * json+jf / json-nojf - N prompts under a schema with long fixed keys (most of its text is
    forced), jump-forward on and off. Reported: output tokens/s, model steps, jumped tokens.
  * free / masked       - N prompts x L tokens unconstrained (EOS ignored), then the same
    under a regex any text of L tokens satisfies (so both decode the same number of steps):
    the difference per step is what masking costs (mask filling on the host, applying on
    the device).
  * mask-only           - fill + apply masks for N matchers in a JSON state, without the model.

    PYTHONPATH=packages/sglang-lang/src:packages/sglang-runtime/src \\
        python benchmarks/grammar_bench.py                      # CPU, embedded SmolLM2
    python benchmarks/grammar_bench.py --device cuda --model-path DIR --load-format dummy
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from typing import Any

import torch

SCHEMA = {
    "type": "object",
    "properties": {
        "customer_loyalty_membership_tier": {"enum": ["bronze", "silver", "gold", "platinum"]},
        "customer_is_subscribed_to_newsletter": {"type": "boolean"},
        "customer_preferred_contact_channel": {"enum": ["email", "phone", "sms"]},
        "customer_number_of_orders_last_year": {"type": "integer", "minimum": 0, "maximum": 99},
        "customer_shipping_address_city_name": {"type": "string", "maxLength": 16},
    },
    "required": ["customer_loyalty_membership_tier", "customer_is_subscribed_to_newsletter",
                 "customer_preferred_contact_channel", "customer_number_of_orders_last_year",
                 "customer_shipping_address_city_name"],
}
TIERS = ["bronze", "silver", "gold", "platinum"]
CITIES = ["Paris", "Lyon", "Oslo", "Rome", "Lima", "Cairo", "Tokyo", "Quito"]
CHAT = "<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n"


def prompts(n: int) -> list[str]:
    return [CHAT.format(
        f"Customer {i}: {TIERS[i % 4]} member in {CITIES[i % 8]}, "
        f"{'subscribed' if i % 2 else 'not subscribed'} to the newsletter, {3 + i} orders last "
        "year. Give the customer record as JSON.") for i in range(n)]


def run(engine: Any, texts: list[str], params: dict[str, Any], repeats: int = 1) -> dict[str, Any]:
    """The fastest of `repeats` runs (a shared machine only ever adds time)."""
    return min((run_once(engine, texts, params) for _ in range(repeats)),
               key=lambda r: r["wall_s"])


def run_once(engine: Any, texts: list[str], params: dict[str, Any]) -> dict[str, Any]:
    sched = engine.runtime.scheduler
    engine.flush_cache()
    before = (sched.forward_steps, sched.decode_steps, sched.jump_forward_tokens)
    t0 = time.perf_counter()
    outs = engine.generate(texts, params)
    wall = time.perf_counter() - t0
    tokens = sum(o["meta_info"]["completion_tokens"] for o in outs)
    steps = sched.forward_steps - before[0]
    # Jumped runs spell forced text in the tokenizer's (fewer) tokens: requests/s compares
    # equal work, tokens/s does not quite.
    return {"wall_s": wall, "output_tokens": tokens, "tok_per_s": tokens / wall,
            "req_per_s": len(texts) / wall,
            "model_steps": steps, "decode_steps": sched.decode_steps - before[1],
            "jumped_tokens": sched.jump_forward_tokens - before[2],
            "ms_per_step": 1000 * wall / max(steps, 1), "outputs": [o["text"] for o in outs]}


def mask_only(engine: Any, backend: str, n: int, repeats: int) -> float:
    """Milliseconds to fill and apply masks for n matchers (positioned inside a JSON string)."""
    from sglang.runtime.grammar.bitmask import mask_logits
    from sglang.runtime.grammar.manager import GrammarManager

    vocab = engine.runtime.scheduler.grammar.vocab
    mgr = GrammarManager(backend, vocab.tokenizer, vocab.vocab_size, set(vocab.eos_ids))
    compiled = mgr.compiled("json_schema", json.dumps(SCHEMA)).result()
    prefix = vocab.tokenizer.encode('{"customer_loyalty_membership_tier": "', add_special_tokens=False)
    matchers = []
    for _ in range(n):
        m = mgr.backend().matcher(compiled)
        for t in prefix:
            m.accept(t)
        matchers.append(m)
    logits = torch.randn(n, vocab.vocab_size, device=engine.runtime.device)
    mask_logits(logits, matchers)
    if logits.is_cuda:
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(repeats):
        mask_logits(logits, matchers)
    if logits.is_cuda:
        torch.cuda.synchronize()
    mgr.shutdown()
    return 1000 * (time.perf_counter() - t0) / repeats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model-path", default=None, help="default: the embedded SmolLM2-135M")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--load-format", default="auto")
    ap.add_argument("--dtype", default="auto")
    from sglang.runtime.plugins import GRAMMAR_BACKENDS

    ap.add_argument("--grammar-backend", default="xgrammar", choices=GRAMMAR_BACKENDS.names())
    ap.add_argument("--num-requests", type=int, default=16)
    ap.add_argument("--free-tokens", type=int, default=32, help="L of the free/masked runs")
    ap.add_argument("--max-total-tokens", type=int, default=32768)
    ap.add_argument("--repeats", type=int, default=2, help="best of this many runs each")
    ap.add_argument("--out", default=None, help="also write the results as JSON here")
    args = ap.parse_args()

    import sglang as sgl

    t0 = time.perf_counter()
    engine = sgl.Engine(model_path=args.model_path, device=args.device,
                        load_format=args.load_format, dtype=args.dtype,
                        grammar_backend=args.grammar_backend,
                        max_total_tokens=args.max_total_tokens, log_level="error")
    load_s = time.perf_counter() - t0
    grammar = engine.runtime.scheduler.grammar
    texts = prompts(args.num_requests)
    json_params = {"temperature": 0, "max_new_tokens": 160, "json_schema": json.dumps(SCHEMA)}
    run(engine, texts[:2], json_params)  # warm-up: compile the grammar, touch every code path

    results: dict[str, Any] = {}
    grammar.jump_forward = True
    results["json+jf"] = run(engine, texts, json_params, args.repeats)
    grammar.jump_forward = False
    results["json-nojf"] = run(engine, texts, json_params, args.repeats)
    grammar.jump_forward = True
    # A jump appends the tokenizer's tokens for forced text where greedy decoding may pick
    # others, so free values after a jump can differ: count the requests whose text matches.
    pairs = zip(results["json+jf"].pop("outputs"), results["json-nojf"].pop("outputs"))
    same = f"{sum(a == b for a, b in pairs)}/{len(texts)}"

    L = args.free_tokens
    free = {"temperature": 0, "max_new_tokens": L, "ignore_eos": True}
    results["free"] = run(engine, texts, free, args.repeats)
    # Any text of L tokens is a prefix of this language and EOS stays masked: same step count.
    masked = {"temperature": 0, "max_new_tokens": L, "ignore_eos": True,
              "regex": r"[^\x00]{1000,100000}"}
    results["masked"] = run(engine, texts, masked, args.repeats)
    for key in ("free", "masked"):
        results[key].pop("outputs")
    mask_ms: dict[str, float | None] = {}
    for b in ("xgrammar", "outlines"):
        try:
            mask_ms[b] = mask_only(engine, b, args.num_requests, 50)
        except ModuleNotFoundError as e:  # the other backend's library may not be installed
            print(f"mask-only timing of {b} skipped: {e}")
            mask_ms[b] = None
    engine.shutdown()

    device = torch.cuda.get_device_name() if args.device.startswith("cuda") else \
        platform.processor() or platform.machine()
    print(f"\nmodel={args.model_path or 'SmolLM2-135M-Instruct (embedded)'} "
          f"load_format={args.load_format} device={args.device} ({device}) "
          f"threads={torch.get_num_threads()} N={args.num_requests} load={load_s:.1f}s "
          f"best of {args.repeats} "
          f"backend={args.grammar_backend}")
    print(f"{'run':<10} {'tokens':>7} {'wall s':>8} {'req/s':>6} {'tok/s':>8} {'steps':>6} "
          f"{'decode':>7} {'jumped':>7} {'ms/step':>8}")
    for name, r in results.items():
        print(f"{name:<10} {r['output_tokens']:>7} {r['wall_s']:>8.2f} {r['req_per_s']:>6.2f} "
              f"{r['tok_per_s']:>8.1f} {r['model_steps']:>6} {r['decode_steps']:>7} "
              f"{r['jumped_tokens']:>7} {r['ms_per_step']:>8.1f}")
    jf, nojf = results["json+jf"], results["json-nojf"]
    extra = results["masked"]["ms_per_step"] - results["free"]["ms_per_step"]
    print(f"jump-forward: {nojf['model_steps'] / max(jf['model_steps'], 1):.1f}x fewer model "
          f"steps, {jf['req_per_s'] / nojf['req_per_s']:.1f}x requests/s; same text as without "
          f"it: {same} requests")
    print(f"masks: +{extra:.2f} ms per decode step of {args.num_requests} requests "
          f"({100 * extra / results['free']['ms_per_step']:.0f}%); mask-only fill+apply for "
          + ", ".join(f"{b} {ms:.2f} ms" if ms is not None else f"{b} not installed"
                      for b, ms in mask_ms.items()))
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"args": vars(args), "device": device, "results": results,
                       "mask_only_ms": mask_ms, "same_text": same}, f, indent=2)


if __name__ == "__main__":
    main()
