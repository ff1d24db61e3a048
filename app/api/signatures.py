"""``POST /v1/signatures`` (sign an image) and ``GET /v1/images/{image}/signatures`` (records).

Signing needs a token whose ``sign:`` scope matches the image (or ``admin``): 401 without a
valid token, 403 out of scope, and in both cases nothing is written to the registry.
Reading records needs a ``sign`` or ``verify`` scope on the image.
"""

from __future__ import annotations

from fastapi import APIRouter, status
from pydantic import ConfigDict, Field, SecretStr

from app.api.auth import PrincipalDep
from app.api.body import RequestBody
from app.api.deps import ServicesDep
from app.enforce.sign import (
    SignatureRecordView,
    SignResult,
    parse_formats,
    sign_image,
    signature_records,
)
from app.oci.refs import ImageRef

router = APIRouter(tags=["signatures"])


class SignRequest(RequestBody):
    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    image: str = Field(max_length=1024, description="Reference to sign; tags resolve to digests")
    key: str | None = Field(default=None, max_length=128, description="Stored key name")
    identity_token: SecretStr | None = Field(
        default=None, description="OIDC identity token for keyless (Sigstore) signing"
    )
    format: str = Field(default="bundle", description="bundle, legacy or both")
    annotations: dict[str, str] = Field(default_factory=dict)
    recursive: bool = False
    force: bool = Field(
        default=False,
        description="Admins only: sign although the policy's sign entry point denies "
        "(recorded as forced).",
    )


@router.post("/v1/signatures", status_code=status.HTTP_201_CREATED, summary="Sign an image")
async def create_signature(
    body: SignRequest, services: ServicesDep, principal: PrincipalDep
) -> SignResult:
    return await sign_image(
        services,
        image=body.image,
        principal=principal,
        key_name=body.key,
        identity_token=body.identity_token.get_secret_value() if body.identity_token else None,
        formats=parse_formats(body.format),
        annotations=body.annotations,
        recursive=body.recursive,
        force=body.force,
    )


@router.get("/v1/images/{image:path}/signatures", summary="Signing records of an image")
def list_signatures(
    image: str, services: ServicesDep, principal: PrincipalDep
) -> list[SignatureRecordView]:
    ref = ImageRef.parse(image)
    if not principal.allows("sign", ref.name):
        principal.authorize("verify", ref.name)
    return signature_records(services, image=image)
