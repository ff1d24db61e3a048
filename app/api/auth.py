"""Bearer-token authentication for API routes.

Routes declare ``principal: PrincipalDep`` (any valid token; 401 otherwise) or
``admin: AdminDep`` (an ``admin``-scoped token; 403 otherwise), then call
``principal.authorize("sign", image.name)`` once they know which image is meant.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool

from app.api.deps import ServicesDep
from app.auth.tokens import Principal, authenticate
from app.db.session import session_scope


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


async def get_principal(request: Request, services: ServicesDep) -> Principal:
    presented = _bearer(request)

    def _lookup() -> Principal:
        with session_scope(services.sessions) as session:
            return authenticate(session, presented)

    return await run_in_threadpool(_lookup)


async def get_admin(principal: Annotated[Principal, Depends(get_principal)]) -> Principal:
    principal.require_admin()
    return principal


PrincipalDep = Annotated[Principal, Depends(get_principal)]
AdminDep = Annotated[Principal, Depends(get_admin)]
