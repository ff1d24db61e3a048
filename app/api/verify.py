"""``POST /v1/verify``: verify an image's signatures, as ``sealgate verify`` does.

The body names the image and exactly one source of trust: ``key`` (a PEM public key),
``authority`` (a stored authority's name), or a keyless identity
(``certificate_identity[_regexp]`` + ``certificate_oidc_issuer[_regexp]``, optional
``trusted_root``). 200 answers ``{"image", "digest", "verified": true, "signatures",
"rejections"}``; when nothing verifies the answer is 422 ``verify.no_valid_signature`` with
the per-candidate reasons in ``error.details.rejections``.

Who may call it: a token whose scopes allow ``verify`` on the image (``verify:GLOB``, or
``admin``). Verification reads the registry with Sealgate's own registry credentials, so
it is scoped like signing rather than open to any valid token.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import Field

from app.api.auth import PrincipalDep
from app.api.authorities import IdentityFields
from app.api.deps import ServicesDep
from app.enforce.verify import verify_image
from app.oci.refs import ImageRef

router = APIRouter(prefix="/v1", tags=["verify"])


class VerifyRequest(IdentityFields):
    image: str = Field(max_length=1024)
    key: str | None = Field(default=None, max_length=65536, description="PEM public key")
    authority: str | None = Field(default=None, max_length=128)


@router.post("/verify", summary="Verify an image's signatures")
async def verify(
    body: VerifyRequest, services: ServicesDep, principal: PrincipalDep
) -> dict[str, Any]:
    image = ImageRef.parse(body.image)
    principal.authorize("verify", image.name)
    report = await verify_image(
        services,
        image=image,
        key_pem=body.key,
        authority=body.authority,
        identity=body.identity() if body.names_identity else None,
        trusted_root=body.root(),
    )
    report.require_verified()
    return report.to_json()
