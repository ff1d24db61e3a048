"""``POST /hooks/distribution`` and ``POST /hooks/harbor``: registry webhooks into the inbox.

A receiver does nothing but check the sender, parse the body and write the inbox: the
decision runs later in the worker, so a slow decision never slows the registry's queue.

1. the sender's address must be on the hook's allow-list, if one is configured (403);
2. ``Authorization`` must carry the hook's shared secret (401); neither check reads the body;
3. the body must be an envelope of the source's format (400 naming what is wrong, 415 for
   another content type); the service's body limit answers 413 to anything over 16 MiB;
4. the envelope's events are stored in one transaction, duplicates of stored events
   ignored; the answer (200) comes after the commit, so the registry's retries cover any
   failure before it. A refused request stores nothing and is counted in
   ``sealgate_hook_rejected_total{source,reason}``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request

from app.api.deps import ServicesDep
from app.db.session import session_scope
from app.errors import Error, HookError, InputError
from app.hooks.access import check_address, check_secret
from app.hooks.distribution import ENVELOPE_MEDIA_TYPES, parse_distribution
from app.hooks.events import EventSource, ParsedEnvelope
from app.hooks.harbor import parse_harbor
from app.hooks.inbox import StoreResult, store_events
from app.observability import Metrics
from app.services import Services

router = APIRouter(prefix="/hooks", tags=["hooks"])

_HARBOR_MEDIA_TYPES = ("application/json", "application/cloudevents+json")
_INLINE_PARSE_BYTES = 64 * 1024


async def _receive(
    request: Request,
    services: Services,
    *,
    source: EventSource,
    parse: Callable[[bytes], ParsedEnvelope],
    media_types: tuple[str, ...],
) -> dict[str, Any]:
    metrics: Metrics = request.app.state.metrics
    label = source.value
    try:
        check_address(services.settings, source, request.client.host if request.client else None)
    except Error:
        metrics.hook_rejected.labels(label, "address").inc()
        raise
    try:
        check_secret(services.settings, source, request.headers.get("authorization"))
    except Error:
        metrics.hook_rejected.labels(label, "unauthenticated").inc()
        raise
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type and content_type not in media_types:
        metrics.hook_rejected.labels(label, "media_type").inc()
        raise InputError(
            f"the {label} hook takes {', '.join(media_types)}, not {content_type[:100]}",
            code="input.unsupported_media_type",
        )
    body = await request.body()
    try:
        # A small envelope parses faster than a thread hop; a large one must not hold the loop.
        if len(body) <= _INLINE_PARSE_BYTES:
            parsed = parse(body)
        else:
            parsed = await asyncio.to_thread(parse, body)
    except HookError:
        metrics.hook_rejected.labels(label, "malformed").inc()
        raise

    def _store() -> StoreResult:
        with session_scope(services.sessions) as session:
            return store_events(session, parsed.events)

    try:
        result = await asyncio.to_thread(_store)
    except Error:
        metrics.hook_rejected.labels(label, "store").inc()
        raise
    for outcome, n in (
        ("stored", result.stored),
        ("duplicate", result.duplicates),
        ("ignored", len(parsed.ignored)),
        ("unreadable", len(parsed.unreadable)),
    ):
        if n:
            metrics.hook_events.labels(label, outcome).inc(n)
    return {
        "stored": result.stored,
        "duplicates": result.duplicates,
        "ignored": len(parsed.ignored),
        "unreadable": [u.reason for u in parsed.unreadable][:20],
    }


_DESCRIPTION = (
    "Needs the hook's shared secret in `Authorization` (the secret itself or `Bearer "
    "<secret>`). Answers 200 with counts once the events are committed to the inbox; 400 "
    "for a body that is not an envelope, 401/403 for a refused sender; nothing is stored "
    "then."
)


@router.post(
    "/distribution",
    summary="Receive a distribution (CNCF registry) notification envelope",
    description=_DESCRIPTION,
)
async def distribution_hook(request: Request, services: ServicesDep) -> dict[str, Any]:
    return await _receive(
        request,
        services,
        source=EventSource.distribution,
        parse=parse_distribution,
        media_types=ENVELOPE_MEDIA_TYPES,
    )


@router.post(
    "/harbor",
    summary="Receive a Harbor webhook (Default or CloudEvents format)",
    description=_DESCRIPTION,
)
async def harbor_hook(request: Request, services: ServicesDep) -> dict[str, Any]:
    return await _receive(
        request,
        services,
        source=EventSource.harbor,
        parse=parse_harbor,
        media_types=_HARBOR_MEDIA_TYPES,
    )
