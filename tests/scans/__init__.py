"""Tests of app/scans; ``parts`` gives the domain functions what they take from a service."""

from __future__ import annotations

from typing import Any

from app.services import Services


def parts(services: Services) -> dict[str, Any]:
    """The registry client and database of ``services``, as ``ingest_scan``,
    ``collect_scans`` and ``key_scan_attester`` take them."""
    return {"registry": services.registry, "sessions": services.sessions}
