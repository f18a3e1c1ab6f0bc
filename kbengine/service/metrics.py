"""Prometheus metrics of one app (its own registry): requests per route and status, latency per
route, the worker queue's depth, ingest jobs."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class Metrics:
    def __init__(self, depth: Callable[[], float]) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "kbengine_requests_total", "HTTP requests by route and status.", ["route", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "kbengine_request_seconds",
            "HTTP request latency by route (seconds, until the response starts).",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.queue = Gauge("kbengine_queue_depth", "Model calls running or waiting.", registry=self.registry)
        self.queue.set_function(depth)
        self.busy = Counter("kbengine_busy_total", "Requests refused with 503 (queue full).", registry=self.registry)
        self.jobs = Counter("kbengine_ingest_jobs_total", "Ingest jobs by outcome.", ["state"], registry=self.registry)

    def observe(self, route: str, status: int, seconds: float) -> None:
        self.requests.labels(route=route, status=str(status)).inc()
        self.latency.labels(route=route).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
