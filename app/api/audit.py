"""``/v1/audit``: reading the audit trail (``admin`` or ``audit:`` tokens).

``GET /v1/audit`` filters by time (``since``/``until``: ``7d``, a date or a date-time),
image, digest, namespace, decision, actor and kind, newest first, ``limit`` at most 500,
with an opaque ``cursor`` for the next page. A token scoped ``audit:GLOB`` must name an
image its glob covers and sees only records about it (of an admission review, which names
every image of its object, only the images its scopes cover; the record's decision is the
review's); ``audit:**`` or ``admin`` reads all.
``GET /v1/audit/{seq}`` is one record with its stored input (whole-trail readers only).
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from fastapi.concurrency import run_in_threadpool

from app.api.auth import PrincipalDep
from app.api.deps import ServicesDep
from app.audit.query import (
    MAX_PAGE,
    AuditFilter,
    AuditPage,
    AuditRecordView,
    get_record,
    list_records,
    parse_since,
)
from app.auth.tokens import Principal
from app.db.session import session_scope
from app.errors import ForbiddenError, InputError
from app.oci.refs import ImageRef

router = APIRouter(prefix="/v1/audit", tags=["audit"])


def _reads_everything(principal: Principal) -> bool:
    return principal.is_admin or any(
        s.action == "audit" and s.glob == "**" for s in principal.scopes
    )


def _authorize(principal: Principal, image: str | None) -> None:
    if _reads_everything(principal):
        return
    if image is None:
        raise ForbiddenError(
            f"token {principal.name!r} may read the audit trail only for the images its "
            "audit scopes cover: give image=..., or use an admin or audit:** token",
            code="auth.out_of_scope",
        )
    principal.authorize("audit", ImageRef.parse(image).name)


@router.get("", summary="Audit records, newest first, filtered, one page at a time")
async def list_audit(
    services: ServicesDep,
    principal: PrincipalDep,
    since: Annotated[
        str | None, Query(max_length=64, description="7d, 24h, a date or a date-time")
    ] = None,
    until: Annotated[str | None, Query(max_length=64)] = None,
    image: Annotated[str | None, Query(max_length=512)] = None,
    digest: Annotated[str | None, Query(max_length=100)] = None,
    namespace: Annotated[str | None, Query(max_length=253)] = None,
    decision: Annotated[str | None, Query(max_length=16)] = None,
    actor: Annotated[str | None, Query(max_length=256)] = None,
    kind: Annotated[str | None, Query(max_length=64)] = None,
    cursor: Annotated[str | None, Query(max_length=128)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
) -> AuditPage:
    _authorize(principal, image)
    now = dt.datetime.now(dt.UTC)
    where = AuditFilter(
        since=parse_since(since, now=now) if since else None,
        until=parse_since(until, now=now) if until else None,
        image=image,
        digest=digest,
        namespace=namespace,
        decision=decision,
        actor=actor,
        kind=kind,
    )

    def _page() -> AuditPage:
        with session_scope(services.sessions) as session:
            return list_records(session, where=where, limit=limit, cursor=cursor)

    page = await run_in_threadpool(_page)
    if _reads_everything(principal):
        return page
    return page.model_copy(update={"records": [_within_scope(r, principal) for r in page.records]})


def _within_scope(record: AuditRecordView, principal: Principal) -> AuditRecordView:
    """``record`` as a scoped reader sees it: an admission review names every image of its
    object, and the images the reader's scopes do not cover are withheld (counted in
    ``details.withheld_images``)."""
    shown = [image for image in record.images if _covers(principal, image)]
    if len(shown) == len(record.images):
        return record
    details = {**record.details, "withheld_images": len(record.images) - len(shown)}
    return record.model_copy(update={"images": shown, "details": details})


def _covers(principal: Principal, image: str) -> bool:
    try:
        name = ImageRef.parse(image).name
    except InputError:
        return False
    return principal.allows("audit", name)


@router.get("/{seq}", summary="One audit record with its stored input")
async def show_audit(
    seq: Annotated[int, Path(ge=1, lt=2**63)], services: ServicesDep, principal: PrincipalDep
) -> dict[str, Any]:
    _authorize(principal, None)

    def _show() -> dict[str, Any]:
        with session_scope(services.sessions) as session:
            record, stored = get_record(session, seq=seq)
        return {"record": record.model_dump(mode="json"), "input": stored}

    return await run_in_threadpool(_show)
