"""``/v1/keys``: keys held by Sealgate, for administrators only.

Every answer carries public material only (name, algorithm, key id, public PEM, status);
private keys never leave ``app.signing.keys``.
"""

from __future__ import annotations

from fastapi import APIRouter, Response, status
from pydantic import ConfigDict, Field, SecretStr

from app.api.auth import AdminDep
from app.api.body import RequestBody
from app.api.deps import ServicesDep
from app.db.session import session_scope
from app.signing.keys import KeyInfo, disable_key, generate_key, get_key, import_key, list_keys
from app.signing.signers import Algorithm, parse_algorithm

router = APIRouter(prefix="/v1/keys", tags=["keys"])


class GenerateKeyRequest(RequestBody):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(max_length=128)
    algorithm: str = Algorithm.ecdsa_p256.value


class ImportKeyRequest(RequestBody):
    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    name: str = Field(max_length=128)
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
            password=password,
            actor=admin.name,
        )


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
