"""JSON logs with a request id, and the Prometheus metrics the service exports.

Every log line is one JSON object (``ts``, ``level``, ``logger``, ``msg``, ``request_id``
and any ``extra`` fields). The request id comes from an incoming ``X-Request-ID`` header
or is generated, and is echoed in the response.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import orjson
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "request_id", default=None
)

_RESERVED = set(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime", "color_message"}


class JsonFormatter(logging.Formatter):
    """Formats a record as one line of JSON; ``extra=`` fields become top-level keys."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        request_id = request_id_var.get()
        if request_id:
            entry["request_id"] = request_id
        for key, value in vars(record).items():
            if key not in _RESERVED and not key.startswith("_"):
                entry[key] = value
        if record.exc_info and record.levelno >= logging.ERROR:
            entry["exc_type"] = record.exc_info[0].__name__ if record.exc_info[0] else None
        try:
            return orjson.dumps(entry, default=str).decode()
        except orjson.JSONEncodeError:  # what only the standard library writes (big integers)
            return json.dumps(entry, default=str)


def configure_logging(level: str = "INFO") -> None:
    """Send every logger's records to stderr as JSON lines (idempotent)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    logging.getLogger("httpx").setLevel(logging.WARNING)
    # What the JSON lines never show is not gathered for every record (the logging HOWTO's
    # "Optimization"): the caller's file and line (a stack walk) and the thread and process
    # names. With orjson instead of json, a request's log line costs 7.3 instead of 11.8 µs
    # (measured in isolation; every admission review writes one).
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    # uvicorn's access log duplicates our own request log line.
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)


# Buckets reach 10 s: registry round trips and keyless verification can be slow.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


_BUDGET_CODES = frozenset({"policy.busy"})


class Metrics:
    """The service's Prometheus metrics, on a registry of their own (one per app)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.http_requests = Counter(
            "sealgate_http_requests_total",
            "HTTP requests answered, by method, route template and status code.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.http_latency = Histogram(
            "sealgate_http_request_duration_seconds",
            "Time to answer an HTTP request, by method and route template.",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.errors = Counter(
            "sealgate_errors_total",
            "Errors answered to callers, by stable error code.",
            ["code"],
            registry=self.registry,
        )
        self.hook_rejected = Counter(
            "sealgate_hook_rejected_total",
            "Registry webhook requests refused, by source and reason (unauthenticated, "
            "address, malformed, media_type, too_large, store).",
            ["source", "reason"],
            registry=self.registry,
        )
        self.hook_events = Counter(
            "sealgate_hook_events_total",
            "Events in accepted webhook envelopes, by source and outcome (stored, duplicate, "
            "ignored, unreadable).",
            ["source", "outcome"],
            registry=self.registry,
        )

        self.admission_reviews = Counter(
            "sealgate_admission_reviews_total",
            "AdmissionReviews answered, by decision (allowed, denied), enforcement mode of "
            "the policy (enforce, warn, audit; none without images), webhook and object kind.",
            ["decision", "mode", "webhook", "kind"],
            registry=self.registry,
        )
        self.admission_latency = Histogram(
            "sealgate_admission_review_duration_seconds",
            "Time to answer an AdmissionReview, by webhook.",
            ["webhook"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.admission_budget_exhausted = Counter(
            "sealgate_admission_budget_exhausted_total",
            "Images whose decision ran out of the review's budget, by what ran out "
            "(deadline.registry, deadline.store, deadline.policy, policy.busy).",
            ["code"],
            registry=self.registry,
        )
        self.decision_failures = Counter(
            "sealgate_decision_failures_total",
            "Decisions that could not be made, by stable code (registry.unreachable, "
            "registry.unauthorized, deadline.registry...).",
            ["code"],
            registry=self.registry,
        )

    def observe_admission(self, answer: Any, *, seconds: float, mutate: bool) -> None:
        """Count one answered review (an ``app.enforce.admission.AdmissionAnswer``)."""
        webhook = "mutate" if mutate else "validate"
        modes = {o.decision.mode for o in answer.outcomes if o.failure is None}
        mode = "none" if not answer.outcomes else ("enforce" if not modes else min(modes))
        self.admission_reviews.labels(
            "allowed" if answer.allowed else "denied", mode, webhook, answer.kind
        ).inc()
        self.admission_latency.labels(webhook).observe(seconds)
        for outcome in answer.outcomes:
            if outcome.failure is None:
                continue
            self.decision_failures.labels(outcome.failure).inc()
            if outcome.failure.startswith("deadline.") or outcome.failure in _BUDGET_CODES:
                self.admission_budget_exhausted.labels(outcome.failure).inc()

    def watch_caches(self, caches: Callable[[], Iterable[Any]]) -> None:
        """Export the hits, misses and evictions of the pipeline's caches (objects with a
        ``name`` and ``stats``), read at each scrape."""
        self.registry.register(_CacheCollector(caches))

    def watch_retention(self, stats: Callable[[], Any]) -> None:
        """Export what the worker's audit retention runs did (an
        ``app.hooks.worker.RetentionStats``), read at each scrape."""
        self.registry.register(_RetentionCollector(stats))


class _RetentionCollector(Collector):
    def __init__(self, stats: Callable[[], Any]) -> None:
        self._stats = stats

    def collect(self) -> Iterator[Metric]:
        stats = self._stats()
        runs = CounterMetricFamily(
            "sealgate_audit_retention_runs",
            "Audit retention runs of this process's worker, by outcome (done, skipped while "
            "another replica ran it, failed).",
            labels=["outcome"],
        )
        purged = CounterMetricFamily(
            "sealgate_audit_retention_purged",
            "What this process's retention runs deleted, by kind (records, inputs, decisions).",
            labels=["kind"],
        )
        for outcome, count in stats.runs.items():
            runs.add_metric([outcome], count)
        purged.add_metric(["records"], stats.records_purged)
        purged.add_metric(["inputs"], stats.inputs_purged)
        purged.add_metric(["decisions"], stats.decisions_purged)
        yield runs
        yield purged


class _CacheCollector(Collector):
    def __init__(self, caches: Callable[[], Iterable[Any]]) -> None:
        self._caches = caches

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "sealgate_cache_requests",
            "Look-ups in the decision pipeline's caches, by cache and result (hit, miss).",
            labels=["cache", "result"],
        )
        evictions = CounterMetricFamily(
            "sealgate_cache_evictions",
            "Entries evicted to keep a cache within its bounds, by cache.",
            labels=["cache"],
        )
        for cache in self._caches():
            requests.add_metric([cache.name, "hit"], cache.stats.hits)
            requests.add_metric([cache.name, "miss"], cache.stats.misses)
            evictions.add_metric([cache.name], cache.stats.evictions)
        yield requests
        yield evictions
