"""``/v1/keys``: keys held by Sealgate, for administrators only.

Every answer carries public material only (name, algorithm, key id, public PEM, scopes,
status); private keys never leave ``app.signing.keys``. A new key needs ``scopes``, the image
globs it may sign (``["**"]`` for every image on purpose); without them the answer is 400.
"""

from __future__ import annotations

from fastapi import APIRouter, Response, status
from pydantic import ConfigDict, Field, SecretStr

from app.api.auth import AdminDep
from app.api.body import RequestBody
from app.api.deps import ServicesDep
from app.db.session import session_scope
from app.signing.keys import (
    KeyInfo,
    disable_key,
    generate_key,
    get_key,
    import_key,
    list_keys,
    set_key_scopes,
)
from app.signing.signers import Algorithm, parse_algorithm

router = APIRouter(prefix="/v1/keys", tags=["keys"])

_SCOPES = "Image globs the key may sign (required; ['**'] for every image)"


class GenerateKeyRequest(RequestBody):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(max_length=128)
    algorithm: str = Algorithm.ecdsa_p256.value
    scopes: list[str] | None = Field(default=None, max_length=256, description=_SCOPES)


class ImportKeyRequest(RequestBody):
    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    name: str = Field(max_length=128)
    scopes: list[str] | None = Field(default=None, max_length=256, description=_SCOPES)
    pem: SecretStr = Field(description="PEM PKCS#8 private key, encrypted or not")
    password: SecretStr | None = None


@router.post("", status_code=status.HTTP_201_CREATED, summary="Generate a key")
def generate(body: GenerateKeyRequest, services: ServicesDep, admin: AdminDep) -> KeyInfo:
    algorithm = parse_algorithm(body.algorithm)
    with session_scope(services.sessions) as session:
        return generate_key(
            session,
            settings=services.settings,
            name=body.name,
            algorithm=algorithm,
            scopes=body.scopes,
            actor=admin.name,
        )


@router.post("/import", status_code=status.HTTP_201_CREATED, summary="Import a PEM private key")
def import_(body: ImportKeyRequest, services: ServicesDep, admin: AdminDep) -> KeyInfo:
    password = body.password.get_secret_value().encode() if body.password else None
    with session_scope(services.sessions) as session:
        return import_key(
            session,
            settings=services.settings,
            name=body.name,
            pem=body.pem.get_secret_value().encode(),
            scopes=body.scopes,
            password=password,
            actor=admin.name,
        )


class KeyScopesRequest(RequestBody):
    model_config = ConfigDict(frozen=True, extra="forbid")

    scopes: list[str] | None = Field(default=None, max_length=256, description=_SCOPES)


@router.put("/{name}/scopes", summary="Replace the images a key may sign")
def put_scopes(
    name: str, body: KeyScopesRequest, services: ServicesDep, admin: AdminDep
) -> KeyInfo:
    with session_scope(services.sessions) as session:
        return set_key_scopes(session, name=name, scopes=body.scopes, actor=admin.name)


@router.get("", summary="List keys")
def list_(services: ServicesDep, admin: AdminDep) -> list[KeyInfo]:
    with session_scope(services.sessions) as session:
        return list_keys(session)


@router.get("/{name}", summary="One key's public information")
def show(name: str, services: ServicesDep, admin: AdminDep) -> KeyInfo:
    with session_scope(services.sessions) as session:
        return get_key(session, name=name)


@router.get(
    "/{name}/public",
    summary="The public key as PEM (usable as cosign.pub)",
    response_class=Response,
    responses={200: {"content": {"application/x-pem-file": {}}}},
)
def public(name: str, services: ServicesDep, admin: AdminDep) -> Response:
    with session_scope(services.sessions) as session:
        info = get_key(session, name=name)
    return Response(info.public_key_pem, media_type="application/x-pem-file")


@router.post("/{name}/disable", summary="Stop a key from signing (it still verifies)")
def disable(name: str, services: ServicesDep, admin: AdminDep) -> KeyInfo:
    with session_scope(services.sessions) as session:
        return disable_key(session, name=name, actor=admin.name)
