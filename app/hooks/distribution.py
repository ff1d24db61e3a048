"""Parsing distribution's notification envelopes (``POST /hooks/distribution``).

distribution (the CNCF registry, Debian's ``docker-registry``) sends
``{"events": [...]}`` with content type ``application/vnd.docker.distribution.events.v1+json``
(v2.x) or ``...v2+json`` (v3); plain ``application/json`` is taken too. Each event has
``id``, ``timestamp``, ``action`` (``push``, ``pull``, ``mount``, ``delete``), ``target``
(``mediaType``, ``digest``, ``repository``, ``url``, ``tag``, ``references`` when the endpoint
sets ``includereferences``), ``request`` (``host``: the registry as the client named it),
``actor`` (``name``) and ``source``.

Manifest pushes (by tag or digest) become ``push`` events and manifest deletes ``delete``
events; pulls, mounts, blob events, tag-only deletes and Sealgate's own signature and referrer
pushes (see ``app.hooks.own``) are acknowledged and ignored.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

from app.errors import HookError
from app.hooks.events import (
    EventAction,
    EventSource,
    IgnoredEvent,
    ParsedEnvelope,
    RegistryEvent,
    build_event,
    parse_time,
    text_field,
)
from app.hooks.own import is_own_tag, names_signature_type
from app.limits import MAX_EVENTS_PER_ENVELOPE
from app.oci import media

ENVELOPE_MEDIA_TYPES = (
    "application/vnd.docker.distribution.events.v1+json",
    "application/vnd.docker.distribution.events.v2+json",
    "application/json",
)

# Manifest media types, including schema 1 (still reported by old clients' pushes).
_MANIFEST_TYPES = frozenset(
    {
        *media.MANIFEST_TYPES,
        "application/vnd.docker.distribution.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v1+prettyjws",
    }
)


def load_json(body: bytes) -> Any:
    """The body as JSON, or HookError naming why it is not."""
    try:
        return json.loads(body.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise HookError("the body is not UTF-8 JSON") from e
    except RecursionError as e:
        raise HookError("the body is JSON nested too deeply") from e
    except ValueError as e:
        raise HookError(f"the body is not JSON: {e}") from e


def parse_distribution(body: bytes) -> ParsedEnvelope:
    """Parse one envelope; HookError when the body is not an envelope at all."""
    document = load_json(body)
    if not isinstance(document, dict) or not isinstance(document.get("events"), list):
        raise HookError('the body is not a distribution envelope: expected {"events": [...]}')
    items = document["events"]
    if len(items) > MAX_EVENTS_PER_ENVELOPE:
        raise HookError(
            f"the envelope has {len(items)} events; at most {MAX_EVENTS_PER_ENVELOPE} are taken",
            code="hook.too_many_events",
        )
    events: list[RegistryEvent] = []
    ignored: list[IgnoredEvent] = []
    unreadable: list[IgnoredEvent] = []
    for index, item in enumerate(items):
        outcome = _event(item, index)
        if isinstance(outcome, RegistryEvent):
            events.append(outcome)
        elif outcome.reason.startswith("unreadable"):
            unreadable.append(outcome)
        else:
            ignored.append(outcome)
    return ParsedEnvelope(
        events=tuple(events), ignored=tuple(ignored), unreadable=tuple(unreadable)
    )


def _registry_host(event: dict[str, Any], target: dict[str, Any]) -> str | None:
    request = event.get("request")
    host = text_field(request.get("host"), limit=255) if isinstance(request, dict) else None
    if host is None:
        url = text_field(target.get("url"), limit=2048)
        host = urlsplit(url).netloc or None if url else None
    return host.lower() if host else None


def _event(item: Any, index: int) -> RegistryEvent | IgnoredEvent:
    if not isinstance(item, dict):
        return IgnoredEvent(event_id=None, reason=f"unreadable: event {index} is not an object")
    event_id = text_field(item.get("id"), limit=255)
    action = item.get("action")
    target = item.get("target")
    if event_id is None or not isinstance(target, dict) or not isinstance(action, str):
        return IgnoredEvent(
            event_id=event_id, reason=f"unreadable: event {index} lacks id, action or target"
        )
    if action in ("pull", "mount"):
        return IgnoredEvent(event_id=event_id, reason=action)
    if action not in ("push", "delete"):
        return IgnoredEvent(event_id=event_id, reason=f"action {action[:32]!r} is not used")
    media_type = text_field(target.get("mediaType"), limit=255)
    tag = text_field(target.get("tag"), limit=128)
    digest = text_field(target.get("digest"), limit=100)
    url = text_field(target.get("url"), limit=2048) or ""
    is_blob = "/blobs/" in url or (media_type is not None and media_type not in _MANIFEST_TYPES)
    if is_blob:
        return IgnoredEvent(event_id=event_id, reason="blob")
    if is_own_tag(tag):
        return IgnoredEvent(event_id=event_id, reason="signature or referrer tag")
    references = target.get("references")
    reference_types = (
        [r.get("mediaType") for r in references if isinstance(r, dict)]
        if isinstance(references, list)
        else []
    )
    artifact_type = text_field(target.get("artifactType"), limit=255)
    if names_signature_type([artifact_type, *reference_types]):
        return IgnoredEvent(event_id=event_id, reason="signature, attestation or scan referrer")
    repository = text_field(target.get("repository"), limit=255)
    registry = _registry_host(item, target)
    if repository is None or registry is None:
        return IgnoredEvent(
            event_id=event_id, reason=f"unreadable: event {index} names no repository or registry"
        )
    if action == "delete":
        if digest is None:
            return IgnoredEvent(event_id=event_id, reason="tag deleted; the manifest remains")
        kind = EventAction.delete
    else:
        if digest is None:
            return IgnoredEvent(
                event_id=event_id, reason=f"unreadable: push event {index} names no digest"
            )
        kind = EventAction.push
    actor = item.get("actor")
    return build_event(
        index,
        source=EventSource.distribution,
        event_id=event_id,
        action=kind,
        registry=registry,
        repository=repository,
        tag=tag,
        digest=digest,
        media_type=media_type,
        artifact_type=artifact_type,
        actor=text_field(actor.get("name"), limit=255) if isinstance(actor, dict) else None,
        occurred_at=parse_time(item.get("timestamp")),
    )
