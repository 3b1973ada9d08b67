"""Seeded random token-id workloads of the GPU suite (no tokenizer, no torch).

Every system gets the same ids from the same seed; each workload has its own RNG so one
workload's prompts never depend on which other phases ran.
"""

from __future__ import annotations

import random

from gpu_suite_plan import Sizes

# Llama-3's special tokens start at 128000; random prompts stay below them.
MAX_PLAIN_ID = 128000


def _ids(rng: random.Random, n: int, vocab: int) -> list[int]:
    hi = min(vocab, MAX_PLAIN_ID)
    return [rng.randrange(hi) for _ in range(n)]


def decode_prompt(sizes: Sizes, vocab: int, seed: int) -> list[int]:
    return _ids(random.Random(f"{seed}-decode"), sizes.decode_prompt, vocab)


def offline_lengths(sizes: Sizes, seed: int) -> list[int]:
    rng = random.Random(f"{seed}-offline-lengths")
    return [rng.randint(sizes.offline_min_in, sizes.offline_max_in)
            for _ in range(sizes.offline_requests)]


def offline_prompts(sizes: Sizes, vocab: int, seed: int) -> list[list[int]]:
    rng = random.Random(f"{seed}-offline-ids")
    return [_ids(rng, n, vocab) for n in offline_lengths(sizes, seed)]


def prefix_prompts(sizes: Sizes, vocab: int, seed: int) -> list[list[int]]:
    rng = random.Random(f"{seed}-prefix")
    prefix = _ids(rng, sizes.prefix_len, vocab)
    return [prefix + _ids(rng, sizes.prefix_unique, vocab) for _ in range(sizes.prefix_requests)]


def warmup_prompts(n: int, length: int, vocab: int, seed: int) -> list[list[int]]:
    """Prompts that share nothing with the timed ones (flush the cache after them anyway)."""
    rng = random.Random(f"{seed}-warmup-{n}-{length}")
    return [_ids(rng, length, vocab) for _ in range(n)]
