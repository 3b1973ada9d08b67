"""Queue ordering policies: which waiting requests the scheduler tries to admit first.

A policy is a function (waiting requests, radix cache) -> the same requests in admission order.
Policies live in `plugins.SCHEDULE_POLICIES` (entry-point group "sglang.schedule_policies"); the
two built-ins below are declared there by the runtime's pyproject.toml.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sglang.runtime.plugins import SCHEDULE_POLICIES
from sglang.runtime.scheduler.request import Req

# Cache-aware ordering matches every waiting request against the tree; past this queue length the
# matching costs more than it saves, so lpm falls back to arrival order.
LPM_MAX_QUEUE = 128

PolicyFn = Callable[[Sequence[Req], Any], list[Req]]


def register_policy(name: str) -> Callable[[PolicyFn], PolicyFn]:
    """Register a policy in this process (tests, scripts); a distribution declares an entry
    point instead, which spawned scheduler processes find too."""

    def wrap(fn: PolicyFn) -> PolicyFn:
        SCHEDULE_POLICIES.register(name, fn)
        return fn

    return wrap


def fcfs(waiting: Sequence[Req], cache: Any) -> list[Req]:
    return sorted(waiting, key=lambda r: r.arrival)


def longest_prefix_match(waiting: Sequence[Req], cache: Any) -> list[Req]:
    if len(waiting) > LPM_MAX_QUEUE or cache.disabled:
        return fcfs(waiting, cache)
    matched = {id(r): cache.match(r.fill_ids[: r.max_cacheable_prefix]).cached_len for r in waiting}
    return sorted(waiting, key=lambda r: (-matched[id(r)], r.arrival))


def get_policy(name: str) -> PolicyFn:
    fn: PolicyFn = SCHEDULE_POLICIES.get(name)
    return fn
