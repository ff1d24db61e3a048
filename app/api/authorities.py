"""``/v1/authorities``: the stored trust (key and keyless authorities), administrators only.

``POST`` creates a key authority (``keys``: PEM public keys) or a keyless one
(``certificate_identity[_regexp]`` + ``certificate_oidc_issuer[_regexp]``, optional
``trusted_root``: ``public-good`` (default), ``staging`` or the trusted root JSON itself; a
file path is refused over HTTP). Each needs image ``scopes`` (``["**"]`` for every image on
purpose; missing or empty is a 400 ``input.authority_scope``), and may say what the signed
identity must be: ``signed_identity`` ``match-repository`` (default), ``any`` or ``remap``
with ``remap_identity`` ``[{"prefix", "signed_prefix"}]`` (``app.verify.identity``).
Answers carry public material only.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Response, status
from pydantic import ConfigDict, Field

from app.api.auth import AdminDep
from app.api.body import RequestBody
from app.api.deps import ServicesDep
from app.db.session import session_scope
from app.verify.identity import MODES, IdentityRemap, SignedIdentityRule
from app.verify.keyless_identity import KeylessIdentity, parse_identity
from app.verify.trust import (
    get_authority,
    list_authorities,
    new_authority,
    remove_authority,
    save_authority,
)
from app.verify.trusted_root import TrustedRootRef

router = APIRouter(prefix="/v1/authorities", tags=["authorities"])


class IdentityFields(RequestBody):
    """cosign's identity flags as request fields (shared with ``POST /v1/verify``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    certificate_identity: str | None = Field(default=None, max_length=4096)
    certificate_identity_regexp: str | None = Field(default=None, max_length=4096)
    certificate_oidc_issuer: str | None = Field(default=None, max_length=4096)
    certificate_oidc_issuer_regexp: str | None = Field(default=None, max_length=4096)
    trusted_root: str | dict[str, Any] | None = Field(
        default=None,
        description="'public-good', 'staging', or the trusted root JSON (object or text)",
    )

    @property
    def names_identity(self) -> bool:
        return any(
            v is not None
            for v in (
                self.certificate_identity,
                self.certificate_identity_regexp,
                self.certificate_oidc_issuer,
                self.certificate_oidc_issuer_regexp,
            )
        )

    def identity(self) -> KeylessIdentity:
        return parse_identity(
            subject=self.certificate_identity,
            subject_regexp=self.certificate_identity_regexp,
            issuer=self.certificate_oidc_issuer,
            issuer_regexp=self.certificate_oidc_issuer_regexp,
        )

    def root(self) -> TrustedRootRef | None:
        if self.trusted_root is None:
            return None
        if isinstance(self.trusted_root, dict):
            return TrustedRootRef.from_text(json.dumps(self.trusted_root))
        return TrustedRootRef.resolve(self.trusted_root, allow_path=False)


class RemapBody(RequestBody):
    model_config = ConfigDict(frozen=True, extra="forbid")

    prefix: str = Field(max_length=255)
    signed_prefix: str = Field(max_length=255)


class AuthorityRequest(IdentityFields):
    name: str = Field(max_length=128)
    keys: list[str] | None = Field(default=None, max_length=32)
    scopes: list[str] | None = Field(
        default=None,
        max_length=256,
        description="Image globs the authority vouches for (required; ['**'] for every image)",
    )
    signed_identity: str | None = Field(
        default=None,
        max_length=32,
        description=f"What the signed identity must be: {MODES} (default match-repository)",
    )
    remap_identity: list[RemapBody] = Field(default_factory=list, max_length=32)

    def signed_identity_rule(self) -> SignedIdentityRule:
        return SignedIdentityRule.parse(
            self.signed_identity,
            [
                IdentityRemap.of(prefix=r.prefix, signed_prefix=r.signed_prefix)
                for r in self.remap_identity
            ],
        )


@router.post("", status_code=status.HTTP_201_CREATED, summary="Add an authority")
def create(body: AuthorityRequest, services: ServicesDep, admin: AdminDep) -> dict[str, Any]:
    authority = new_authority(
        name=body.name,
        keys=body.keys,
        identity=body.identity() if body.names_identity else None,
        trusted_root=body.root(),
        scopes=body.scopes,
        signed_identity=body.signed_identity_rule(),
    )
    with session_scope(services.sessions) as session:
        saved = save_authority(session, authority, actor=admin.name).to_json()
    # This replica decides under the new trust at once; others within the refresh interval.
    services.decisions.context.refresh()
    return saved


@router.get("", summary="List authorities")
def list_(services: ServicesDep, admin: AdminDep) -> list[dict[str, Any]]:
    with session_scope(services.sessions) as session:
        return [a.to_json() for a in list_authorities(session)]


@router.get("/{name}", summary="One authority")
def show(name: str, services: ServicesDep, admin: AdminDep) -> dict[str, Any]:
    with session_scope(services.sessions) as session:
        return get_authority(session, name).to_json()


@router.delete("/{name}", status_code=status.HTTP_204_NO_CONTENT, summary="Remove an authority")
def remove(name: str, services: ServicesDep, admin: AdminDep) -> Response:
    with session_scope(services.sessions) as session:
        remove_authority(session, name, actor=admin.name)
    services.decisions.context.refresh()
    return Response(status_code=status.HTTP_204_NO_CONTENT)
