"""Policy routes: the input schema, and publishing, listing and activating versions."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path
from fastapi.concurrency import run_in_threadpool
from pydantic import ConfigDict, Field

from app.api.auth import AdminDep, PrincipalDep
from app.api.body import RequestBody
from app.api.deps import ServicesDep
from app.db.session import session_scope
from app.policy.bundle import PolicyBundle
from app.policy.input import input_schema
from app.policy.versions import (
    PolicyVersionInfo,
    activate_version,
    list_versions,
    publish_bundle,
)
from app.policy.worker import BundleLimits

router = APIRouter(tags=["policy"])


class BundleUpload(RequestBody):
    """A bundle to publish: ``files`` maps relative paths to text (*.rego, data.json)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    files: dict[str, str] = Field(min_length=1)
    message: str = Field(default="", max_length=4000)
    activate: bool = True


@router.get("/v1/policy/schema", summary="JSON Schema of the policy input (version 1)")
async def policy_input_schema() -> dict[str, Any]:
    return input_schema()


@router.put(
    "/v1/policies",
    status_code=201,
    summary="Publish a bundle (accepted only if it compiles and its tests pass)",
)
async def put_policies(
    upload: BundleUpload, services: ServicesDep, admin: AdminDep
) -> PolicyVersionInfo:
    bundle = PolicyBundle.from_files(upload.files)

    def _publish() -> PolicyVersionInfo:
        with session_scope(services.sessions) as session:
            return publish_bundle(
                session,
                bundle=bundle,
                author=admin.name,
                message=upload.message,
                activate=upload.activate,
                limits=BundleLimits.from_settings(services.settings),
            )

    return await run_in_threadpool(_publish)


@router.get("/v1/policies", summary="Stored policy versions, newest first")
async def get_policies(services: ServicesDep, principal: PrincipalDep) -> list[PolicyVersionInfo]:
    def _list() -> list[PolicyVersionInfo]:
        with session_scope(services.sessions) as session:
            return list_versions(session)

    return await run_in_threadpool(_list)


@router.post(
    "/v1/policies/{version}/activate",
    summary="Activate a version (an older one rolls back); replicas follow within seconds",
)
async def post_activate(
    version: Annotated[int, Path(ge=1)], services: ServicesDep, admin: AdminDep
) -> PolicyVersionInfo:
    def _activate() -> PolicyVersionInfo:
        with session_scope(services.sessions) as session:
            return activate_version(session, version=version, actor=admin.name)

    return await run_in_threadpool(_activate)
