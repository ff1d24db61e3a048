"""Parsing Harbor's webhook payloads (``POST /hooks/harbor``), Default and CloudEvents formats.

Default: ``{"type": "PUSH_ARTIFACT", "occur_at": <unix>, "operator", "event_data":
{"resources": [{"digest", "tag", "resource_url", "scan_overview"}], "repository":
{"repo_full_name", ...}}}``. It carries no event id, so the id is derived from the payload's
own content (type, time, operator, resource): a retry of the same notification gets the same
id and is de-duplicated. CloudEvents (structured mode): ``{"specversion", "id", "type":
"harbor.artifact.pushed", "time", "data": {...same as event_data...}, "operator"}``; its
``id`` is used, suffixed by the resource digest (one payload may list several resources).

``resource_url`` (``harbor.example.com/project/repo:tag``) names the registry host and the
repository. PUSH_ARTIFACT becomes ``push``; DELETE_ARTIFACT ``delete``; SCANNING_COMPLETED
``scan_completed`` with its ``scan_overview``; SCANNING_FAILED / SCANNING_STOPPED are recorded;
every other type is acknowledged and ignored.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from app.errors import HookError
from app.hooks.distribution import load_json
from app.hooks.events import (
    EventAction,
    EventSource,
    IgnoredEvent,
    ParsedEnvelope,
    RegistryEvent,
    ScanOverview,
    build_event,
    parse_time,
    text_field,
)
from app.hooks.own import is_own_tag
from app.limits import MAX_EVENTS_PER_ENVELOPE
from app.oci.refs import ImageRef

_DEFAULT_TYPES = {
    "PUSH_ARTIFACT": EventAction.push,
    "DELETE_ARTIFACT": EventAction.delete,
    "SCANNING_COMPLETED": EventAction.scan_completed,
    "SCANNING_FAILED": EventAction.scan_failed,
    "SCANNING_STOPPED": EventAction.scan_stopped,
}
_CLOUDEVENT_TYPES = {
    "harbor.artifact.pushed": EventAction.push,
    "harbor.artifact.deleted": EventAction.delete,
    "harbor.scan.completed": EventAction.scan_completed,
    "harbor.scan.failed": EventAction.scan_failed,
    "harbor.scan.stopped": EventAction.scan_stopped,
}
VULNERABILITY_REPORT_PREFIX = "application/vnd.security.vulnerability.report"


def parse_harbor(body: bytes) -> ParsedEnvelope:
    """Parse one payload; HookError when it is in neither of Harbor's formats."""
    document = load_json(body)
    if not isinstance(document, dict):
        raise HookError("the body is not a Harbor webhook payload: expected a JSON object")
    if "specversion" in document:
        kind = text_field(document.get("type"), limit=128)
        data = document.get("data")
        base_id = text_field(document.get("id"), limit=200)
        if kind is None or base_id is None or not isinstance(data, dict):
            raise HookError("the CloudEvent lacks id, type or data")
        action = _CLOUDEVENT_TYPES.get(kind)
        occurred = parse_time(document.get("time"))
    else:
        kind = text_field(document.get("type"), limit=128)
        data = document.get("event_data")
        if kind is None or not isinstance(data, dict):
            raise HookError(
                'the body is not a Harbor payload: expected "type" and "event_data" '
                '(Default format) or a CloudEvent with "specversion"'
            )
        action = _DEFAULT_TYPES.get(kind)
        occurred = parse_time(document.get("occur_at"))
        base_id = None
    resources = data.get("resources")
    if not isinstance(resources, list):
        raise HookError("the Harbor payload has no resources list")
    if len(resources) > MAX_EVENTS_PER_ENVELOPE:
        raise HookError(
            f"the payload lists {len(resources)} resources; at most {MAX_EVENTS_PER_ENVELOPE}",
            code="hook.too_many_events",
        )
    if action is None:
        return ParsedEnvelope(
            ignored=(IgnoredEvent(event_id=base_id, reason=f"type {kind} is not used"),)
        )
    repository = data.get("repository")
    full_name = (
        text_field(repository.get("repo_full_name"), limit=255)
        if isinstance(repository, dict)
        else None
    )
    operator = text_field(document.get("operator"), limit=255)
    events: list[RegistryEvent] = []
    ignored: list[IgnoredEvent] = []
    unreadable: list[IgnoredEvent] = []
    for index, resource in enumerate(resources):
        if not isinstance(resource, dict):
            unreadable.append(
                IgnoredEvent(
                    event_id=base_id, reason=f"unreadable: resource {index} is not an object"
                )
            )
            continue
        digest = text_field(resource.get("digest"), limit=100)
        tag = text_field(resource.get("tag"), limit=128)
        event_id = _event_id(base_id, document, resource, index)
        if is_own_tag(tag):
            ignored.append(IgnoredEvent(event_id=event_id, reason="signature or referrer tag"))
            continue
        where = _location(text_field(resource.get("resource_url"), limit=2048), full_name)
        if where is None or digest is None:
            unreadable.append(
                IgnoredEvent(
                    event_id=event_id,
                    reason=f"unreadable: resource {index} names no registry, repository or digest",
                )
            )
            continue
        registry, repo = where
        outcome = build_event(
            index,
            source=EventSource.harbor,
            event_id=event_id,
            action=action,
            registry=registry,
            repository=repo,
            tag=tag,
            digest=digest,
            actor=operator,
            occurred_at=occurred,
            scan=_overview(resource.get("scan_overview")),
        )
        (events if isinstance(outcome, RegistryEvent) else unreadable).append(outcome)  # type: ignore[arg-type]
    return ParsedEnvelope(
        events=tuple(events), ignored=tuple(ignored), unreadable=tuple(unreadable)
    )


def _event_id(
    base_id: str | None, document: dict[str, Any], resource: dict[str, Any], index: int
) -> str:
    suffix = text_field(resource.get("digest"), limit=100) or str(index)
    if base_id is not None:
        return f"{base_id}/{suffix}"
    content = {
        "type": document.get("type"),
        "occur_at": document.get("occur_at"),
        "operator": document.get("operator"),
        "resource": resource,
    }
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), default=str)
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def _location(resource_url: str | None, full_name: str | None) -> tuple[str, str] | None:
    """(registry host, repository) from ``resource_url``; the repository must agree with
    ``repo_full_name`` when the payload gives both."""
    if resource_url is None:
        return None
    try:
        ref = ImageRef.parse(resource_url)
    except Exception:
        return None
    if "." not in ref.registry and ":" not in ref.registry and ref.registry != "localhost":
        return None
    if full_name is not None and ref.repository != full_name:
        return None
    return ref.registry, ref.repository


def _overview(value: Any) -> ScanOverview | None:
    """The vulnerability report's overview (the first report media type Harbor lists)."""
    if not isinstance(value, dict):
        return None
    for media_type, report in value.items():
        if not (isinstance(media_type, str) and media_type.startswith(VULNERABILITY_REPORT_PREFIX)):
            continue
        if not isinstance(report, dict):
            continue
        summary = _object(report.get("summary"))
        counts_raw = _object(summary.get("summary"))
        counts = {
            str(k).lower(): v
            for k, v in counts_raw.items()
            if isinstance(v, int) and not isinstance(v, bool) and v >= 0
        }
        scanner = _object(report.get("scanner"))
        return ScanOverview(
            report_media_type=media_type[:200],
            status=text_field(report.get("scan_status"), limit=64),
            scanner=text_field(scanner.get("name"), limit=64),
            scanner_version=text_field(scanner.get("version"), limit=64),
            severity=text_field(report.get("severity"), limit=32),
            total=_count(summary.get("total")),
            fixable=_count(summary.get("fixable")),
            counts=counts,
            started_at=text_field(report.get("start_time"), limit=64),
            finished_at=text_field(report.get("end_time"), limit=64),
        )
    return None


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}
