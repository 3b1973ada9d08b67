"""Queue ordering policies: which waiting requests the scheduler tries to admit first."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sglang.runtime.scheduler.request import Req

# Cache-aware ordering matches every waiting request against the tree; past this queue length the
# matching costs more than it saves, so lpm falls back to arrival order.
LPM_MAX_QUEUE = 128

PolicyFn = Callable[[Sequence[Req], Any], list[Req]]
_POLICIES: dict[str, PolicyFn] = {}


def register_policy(name: str) -> Callable[[PolicyFn], PolicyFn]:
    def wrap(fn: PolicyFn) -> PolicyFn:
        _POLICIES[name] = fn
        return fn

    return wrap


@register_policy("fcfs")
def fcfs(waiting: Sequence[Req], cache: Any) -> list[Req]:
    return sorted(waiting, key=lambda r: r.arrival)


@register_policy("lpm")
def longest_prefix_match(waiting: Sequence[Req], cache: Any) -> list[Req]:
    if len(waiting) > LPM_MAX_QUEUE or cache.disabled:
        return fcfs(waiting, cache)
    matched = {id(r): cache.match(r.fill_ids[: r.max_cacheable_prefix]).cached_len for r in waiting}
    return sorted(waiting, key=lambda r: (-matched[id(r)], r.arrival))


def get_policy(name: str) -> PolicyFn:
    if name not in _POLICIES:
        raise ValueError(f"unknown schedule policy {name!r}; available: {sorted(_POLICIES)}")
    return _POLICIES[name]
