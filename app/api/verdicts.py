"""``GET /v1/images/{image}/verdicts``: the push gate's verdicts on an image.

``image`` is a reference (``registry/repo@sha256:...``, ``registry/repo:tag`` or
``registry/repo``), written as is or URL-encoded. Needs a token whose scopes allow
``verify`` on the image's repository.
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter

from app.api.auth import PrincipalDep
from app.api.deps import ServicesDep
from app.db.session import session_scope
from app.hooks.verdicts import Verdict, verdicts_for
from app.oci.refs import ImageRef

router = APIRouter(prefix="/v1/images", tags=["verdicts"])


@router.get(
    "/{image:path}/verdicts",
    summary="The push gate's verdicts on an image, newest first",
    description="Pinned by digest: that digest's verdicts; with a tag: the verdicts of the "
    "digests pushed under that tag; a bare repository: all its verdicts. `current` marks the "
    "newest verdict of each digest (the one in force); `deleted_at` is set once the registry "
    "reported the manifest deleted.",
)
async def image_verdicts(
    image: str, services: ServicesDep, principal: PrincipalDep
) -> list[Verdict]:
    ref = ImageRef.parse(image)
    principal.authorize("verify", ref.name)
    last_segment = image.rsplit("/", 1)[-1]
    by_tag = "@" not in image and ":" in last_segment

    def _load() -> list[Verdict]:
        with session_scope(services.sessions) as session:
            return verdicts_for(session, ref, by_tag=by_tag)

    return await asyncio.to_thread(_load)
