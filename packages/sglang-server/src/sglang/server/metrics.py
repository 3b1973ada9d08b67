"""Prometheus metrics of the server, in a registry of its own (two servers in one test process,
or a library that also uses prometheus_client, never collide on the global registry)."""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from sglang.runtime.messages import SchedulerStats

# Seconds; CPU serving is slow, so the buckets reach further than a GPU server would need.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                   120.0, 300.0)
ITL_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

CONTENT_TYPE = CONTENT_TYPE_LATEST


class ServerMetrics:
    def __init__(self, model_name: str) -> None:
        self.registry = CollectorRegistry()
        labels = ["model_name"]
        r = self.registry

        def counter(name: str, doc: str, extra: tuple[str, ...] = ()) -> Counter:
            return Counter(name, doc, [*labels, *extra], registry=r)

        def gauge(name: str, doc: str) -> Gauge:
            return Gauge(name, doc, labels, registry=r)

        self.requests = counter(
            "sglang_requests", "finished requests, by how they finished", ("finish_reason",)
        )
        self.prompt_tokens = counter("sglang_prompt_tokens", "prompt tokens of finished requests")
        self.generation_tokens = counter("sglang_generation_tokens", "tokens generated")
        self.cached_tokens = counter(
            "sglang_cached_prompt_tokens", "prompt tokens served from the prefix cache"
        )
        self.ttft = Histogram(
            "sglang_time_to_first_token_seconds", "request arrival to its first output token",
            labels, buckets=LATENCY_BUCKETS, registry=r,
        )
        self.itl = Histogram(
            "sglang_inter_token_latency_seconds", "time between output tokens of a request",
            labels, buckets=ITL_BUCKETS, registry=r,
        )
        self.e2e = Histogram(
            "sglang_e2e_request_latency_seconds", "request arrival to its last output",
            labels, buckets=LATENCY_BUCKETS, registry=r,
        )
        self.num_running = gauge("sglang_num_running_reqs", "requests being prefilled or decoded")
        self.num_queued = gauge("sglang_num_queue_reqs", "requests waiting for admission")
        self.kv_usage = gauge(
            "sglang_token_usage", "share of KV slots held by running requests or locked prefixes"
        )
        self.cache_hit_rate = gauge(
            "sglang_cache_hit_rate", "cached share of all admitted prompt tokens since start"
        )
        self.mean_decode_batch = gauge(
            "sglang_mean_decode_batch_size", "mean requests per decode step since start"
        )
        self.decode_steps = gauge("sglang_decode_steps", "decode steps since start")
        self.forward_steps = gauge("sglang_forward_steps", "forward passes since start")
        self.retractions = gauge(
            "sglang_num_retractions", "requests retracted because the KV pool ran out"
        )
        self.model_name = model_name

    # ---- recorded by the tokenizer manager --------------------------------------------------
    def first_token(self, seconds: float) -> None:
        self.ttft.labels(self.model_name).observe(seconds)

    def inter_token(self, seconds: float, tokens: int) -> None:
        # A chunk may carry several tokens (stream_interval): spread its gap over them.
        per = seconds / max(tokens, 1)
        h = self.itl.labels(self.model_name)
        for _ in range(tokens):
            h.observe(per)

    def finished(
        self, finish_type: str, seconds: float, prompt: int, completion: int, cached: int
    ) -> None:
        m = self.model_name
        self.requests.labels(m, finish_type).inc()
        self.prompt_tokens.labels(m).inc(prompt)
        self.generation_tokens.labels(m).inc(completion)
        self.cached_tokens.labels(m).inc(cached)
        self.e2e.labels(m).observe(seconds)

    # ---- refreshed at scrape time -----------------------------------------------------------
    def update_from_stats(self, s: SchedulerStats) -> None:
        m = self.model_name
        self.num_running.labels(m).set(s.num_running)
        self.num_queued.labels(m).set(s.num_waiting)
        self.kv_usage.labels(m).set(s.kv_used_tokens / s.kv_total_tokens if s.kv_total_tokens else 0)
        self.cache_hit_rate.labels(m).set(
            s.cached_prompt_tokens / s.prompt_tokens if s.prompt_tokens else 0.0
        )
        self.mean_decode_batch.labels(m).set(
            s.decode_batch_tokens / s.decode_steps if s.decode_steps else 0.0
        )
        self.decode_steps.labels(m).set(s.decode_steps)
        self.forward_steps.labels(m).set(s.forward_steps)
        self.retractions.labels(m).set(s.num_retractions)

    def render(self) -> bytes:
        return generate_latest(self.registry)
