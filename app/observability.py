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
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram

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
    # uvicorn's access log duplicates our own request log line.
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)


# Buckets reach 10 s: registry round trips and keyless verification can be slow.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


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
