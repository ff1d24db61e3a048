"""The sign flow: authorize, resolve, sign, publish, record.

``sign_image`` is what ``POST /v1/signatures`` and ``sealgate sign`` both call:

1. parse the reference and check the caller's ``sign`` scope on the image name, before
   anything touches the registry (an out-of-scope caller gets 403 and nothing is written);
2. load the key (a disabled key, or one whose scopes do not cover the image, fails here,
   still before the registry) or parse the OIDC token;
3. resolve a tag to its digest (only digests are signed); with ``recursive``, an index is
   signed together with every manifest it lists;
4. for each digest, write each requested format: a DSSE bundle referrer (``bundle``) and/or a
   layer on the ``sha256-<hex>.sig`` manifest (``legacy``);
5. record one ``SignatureRecord`` per signed digest (who, image, digest, key or identity,
   formats, signature manifest digests, time).

Keyless legacy layers carry cosign's certificate, chain and Rekor bundle annotations; each
keyless signing has its own certificate and log entry, so they are never deduplicated (key
signatures are: one layer per payload and key).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import datetime as dt
import functools
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from app.audit.changes import record_change
from app.audit.entry import AuditKind
from app.auth.tokens import Principal
from app.db.models import SignatureRecord
from app.db.session import session_scope
from app.enforce.deadline import Deadline
from app.enforce.outcome import Actor, DecisionRequest, Outcome
from app.enforce.pipeline import decide
from app.errors import ForbiddenError, InputError, SigningError
from app.limits import MAX_ANNOTATIONS, MAX_INDEX_CHILDREN
from app.observability import request_id_var
from app.oci.digests import parse_digest
from app.oci.refs import ImageRef
from app.policy.input import Entrypoint
from app.services import Services
from app.signing.bundles import key_dsse_bundle
from app.signing.keys import load_signer
from app.signing.payloads import cosign_statement, simple_signing_payload
from app.signing.publish import SIGNATURE_ANNOTATION, publish_bundle, publish_legacy
from app.signing.signers import KeySigner


class SignFormat(StrEnum):
    bundle = "bundle"
    legacy = "legacy"


def parse_formats(text: str) -> tuple[SignFormat, ...]:
    """``bundle`` | ``legacy`` | ``both`` as the formats to write; ``InputError`` otherwise."""
    if text == "both":
        return (SignFormat.bundle, SignFormat.legacy)
    try:
        return (SignFormat(text),)
    except ValueError:
        raise InputError(
            f"signature format {text!r} is not known; use bundle, legacy or both",
            code="input.sign_format",
        ) from None


def parse_annotations(pairs: list[str]) -> dict[str, str]:
    """``k=v`` strings as a mapping; ``InputError`` naming a pair without ``=`` or key."""
    annotations: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise InputError(f"annotation {pair[:80]!r} is not KEY=VALUE", code="input.annotation")
        annotations[key.strip()] = value
    return annotations


class SignedManifest(BaseModel):
    """One signature written: which digest, in which format, in which manifest."""

    model_config = ConfigDict(frozen=True)

    digest: str
    format: SignFormat
    signature_digest: str


class SignResult(BaseModel):
    """What ``sign_image`` did. ``digest`` is the digest the reference resolved to."""

    model_config = ConfigDict(frozen=True)

    image: str
    digest: str
    digests: tuple[str, ...]
    formats: tuple[SignFormat, ...]
    signatures: tuple[SignedManifest, ...]
    key_name: str | None = None
    key_id: str | None = None
    identity: str | None = None
    issuer: str | None = None
    # The sign gate: the decision the policy's ``sign`` entry point made, and whether an
    # admin signed anyway (``force``) although it denied.
    gate_decision_allowed: bool | None = None
    gate_denials: tuple[str, ...] = ()
    forced: bool = False


class SignatureRecordView(BaseModel):
    """A stored signing record as the API and CLI show it."""

    model_config = ConfigDict(frozen=True)

    image: str
    digest: str
    signed_by: str
    key_name: str | None
    identity: str | None
    issuer: str | None
    formats: list[str]
    signature_digests: list[str]
    created_at: dt.datetime


def _check_annotations(annotations: dict[str, Any]) -> dict[str, str]:
    if len(annotations) > MAX_ANNOTATIONS:
        raise InputError(f"at most {MAX_ANNOTATIONS} annotations", code="input.annotation")
    for key, value in annotations.items():
        if not isinstance(key, str) or not key or not isinstance(value, str):
            raise InputError("annotations must map non-empty strings to strings")
        if len(key) > 256 or len(value) > 4096:
            raise InputError(f"annotation {key[:40]!r} is too long", code="input.annotation")
    return dict(annotations)


class _Keyless(BaseModel):
    model_config = ConfigDict(frozen=True)

    token: str = Field(repr=False)  # the caller's OIDC token: a bearer credential
    identity: str
    issuer: str


def _keyless(identity_token: str) -> _Keyless:
    from app.signing.keyless import parse_identity_token

    token = parse_identity_token(identity_token)
    return _Keyless(token=identity_token, identity=token.identity, issuer=token.issuer)


def _children(manifest_json: dict[str, Any]) -> list[str]:
    listed = manifest_json.get("manifests")
    if not isinstance(listed, list):
        return []
    if len(listed) > MAX_INDEX_CHILDREN:
        raise SigningError(
            f"the index lists {len(listed)} manifests; --recursive signs at most "
            f"{MAX_INDEX_CHILDREN}",
            code="signing.index_too_large",
        )
    digests: list[str] = []
    for entry in listed:
        digest = entry.get("digest") if isinstance(entry, dict) else None
        if not isinstance(digest, str):
            raise SigningError("the index has an entry without a digest", code="signing.index")
        parse_digest(digest)
        if digest not in digests:
            digests.append(digest)
    return digests


async def _sign_one(
    services: Services,
    *,
    ref: ImageRef,
    formats: tuple[SignFormat, ...],
    annotations: dict[str, str],
    signer: KeySigner | None,
    keyless: _Keyless | None,
) -> list[SignedManifest]:
    assert ref.digest is not None
    written: list[SignedManifest] = []
    for fmt in formats:
        if fmt is SignFormat.bundle:
            statement = cosign_statement(
                digest=ref.digest, repository=ref.name, annotations=annotations
            )
            if signer is not None:
                bundle = key_dsse_bundle(statement=statement, signer=signer)
            else:
                assert keyless is not None
                bundle = await _keyless_bundle(services, statement, keyless)
            digest = await publish_bundle(services.registry, image=ref, bundle=bundle)
        else:
            payload = simple_signing_payload(
                docker_reference=ref.name, digest=ref.digest, annotations=annotations
            )
            if signer is not None:
                signature = signer.sign(payload)
                digest = await publish_legacy(
                    services.registry,
                    image=ref,
                    payload=payload,
                    annotations={SIGNATURE_ANNOTATION: base64.b64encode(signature).decode()},
                    is_duplicate=functools.partial(_made_by, signer, payload),
                )
            else:
                assert keyless is not None
                layer = await _keyless_legacy(services, payload, keyless)
                digest = await publish_legacy(
                    services.registry, image=ref, payload=payload, annotations=layer
                )
        written.append(SignedManifest(digest=ref.digest, format=fmt, signature_digest=digest))
    return written


def _made_by(signer: KeySigner, payload: bytes, layer_annotations: dict[str, str]) -> bool:
    try:
        signature = base64.b64decode(layer_annotations.get(SIGNATURE_ANNOTATION, ""), validate=True)
    except (binascii.Error, ValueError):
        return False
    return signer.made(data=payload, signature=signature)


async def _keyless_legacy(services: Services, payload: bytes, keyless: _Keyless) -> dict[str, str]:
    from app.signing.keyless import sign_payload_keyless

    signed = await asyncio.to_thread(
        sign_payload_keyless,
        payload=payload,
        identity_token=keyless.token,
        trust=services.settings.sigstore_trust_config,
    )
    return signed.annotations()


async def _keyless_bundle(services: Services, statement: bytes, keyless: _Keyless) -> bytes:
    from app.signing.keyless import sign_statement_keyless

    bundle_json = await asyncio.to_thread(
        sign_statement_keyless,
        statement=statement,
        identity_token=keyless.token,
        trust=services.settings.sigstore_trust_config,
    )
    return bundle_json.encode()


async def sign_image(
    services: Services,
    *,
    image: str,
    principal: Principal,
    key_name: str | None = None,
    identity_token: str | None = None,
    formats: tuple[SignFormat, ...] = (SignFormat.bundle,),
    annotations: dict[str, str] | None = None,
    recursive: bool = False,
    force: bool = False,
) -> SignResult:
    """Sign ``image`` with the stored key ``key_name`` or keylessly with ``identity_token``,
    once the policy's ``sign`` entry point allows it (the sign gate). ``force`` (admins
    only) signs although the gate denies, and says so in the result and the records.

    Raises ``InputError`` (bad reference, both or neither of key and token, bad annotations),
    ``ForbiddenError`` (out of scope, the gate denied (``signing.denied_by_policy``, with
    the reasons), or ``force`` without admin; nothing written), ``NotFoundError``
    (unknown key), ``SigningError`` (disabled key; a key whose scopes do not cover the image,
    403 with nothing written; Sigstore failure), ``RegistryError``.
    """
    ref = ImageRef.parse(image)
    # (1) authorization before anything else touches the registry.
    principal.authorize("sign", ref.name)
    if force and not principal.is_admin:
        raise ForbiddenError(
            f"token {principal.name!r} may not sign against the policy: --force is for admins",
            code="auth.not_admin",
        )
    extra = _check_annotations(annotations or {})
    if not formats:
        raise InputError("give at least one signature format", code="input.sign_format")
    formats = tuple(dict.fromkeys(formats))
    if (key_name is None) == (identity_token is None):
        raise InputError(
            "sign with exactly one of a key name or a Sigstore identity token",
            code="input.sign_method",
        )
    # (2) key or identity, still before the registry.
    signer: KeySigner | None = None
    keyless: _Keyless | None = None
    if key_name is not None:
        signer = await asyncio.to_thread(_load_signer, services, key_name, ref.name)
    else:
        assert identity_token is not None
        keyless = _keyless(identity_token)
    # (3) only digests are signed.
    digest = ref.digest or await services.registry.resolve_digest(ref)
    pinned = ref.with_digest(digest)
    # (3a) the sign gate: nothing is written unless the policy allows it (or an admin forces).
    gate = await _sign_gate(services, pinned, principal)
    if not gate.allowed and not force:
        reasons = "; ".join(f"{f.message} [{f.code}]" for f in gate.decision.deny[:8])
        raise ForbiddenError(
            f"the policy does not allow signing {ref.name}@{digest}: {reasons}",
            code="signing.denied_by_policy",
            details={
                "denials": [f.model_dump(mode="json") for f in gate.decision.deny],
                "policy_version": gate.policy_version,
            },
        )
    targets = [pinned]
    if recursive:
        manifest = await services.registry.get_manifest(pinned)
        if manifest.is_index:
            targets += [ref.with_digest(child) for child in _children(manifest.json)]
    # (4) sign and publish.
    signatures: list[SignedManifest] = []
    for target in targets:
        signatures += await _sign_one(
            services,
            ref=target,
            formats=formats,
            annotations=extra,
            signer=signer,
            keyless=keyless,
        )
    result = SignResult(
        image=ref.name,
        digest=digest,
        digests=tuple(t.digest for t in targets if t.digest),
        formats=formats,
        signatures=tuple(signatures),
        key_name=signer.name if signer else None,
        key_id=signer.key_id if signer else None,
        identity=keyless.identity if keyless else None,
        issuer=keyless.issuer if keyless else None,
        gate_decision_allowed=gate.allowed,
        gate_denials=gate.codes if not gate.allowed else (),
        forced=force and not gate.allowed,
    )
    # (5) record; decisions here see the new signature at once (other replicas when they
    # next refresh: they read the new signing records).
    await asyncio.to_thread(_record, services, result, principal.name)
    services.decisions.context.forget_evidence([(ref.name, d) for d in result.digests])
    return result


async def _sign_gate(services: Services, pinned: ImageRef, principal: Principal) -> Outcome:
    """The ``sign`` entry point's decision about ``pinned`` (recorded like every decision)."""
    request = DecisionRequest(
        image=str(pinned),
        entrypoint=Entrypoint.sign,
        deadline=Deadline(services.settings.decision_deadline),
        actor=Actor(kind="token", name=principal.name),
        request_id=request_id_var.get(),
    )
    return await decide(request, services.decisions)


def _load_signer(services: Services, key_name: str, image_name: str) -> KeySigner:
    with session_scope(services.sessions) as session:
        return load_signer(
            session, settings=services.settings, name=key_name, image_name=image_name
        )


def _record(services: Services, result: SignResult, signed_by: str) -> None:
    with session_scope(services.sessions) as session:
        for digest in result.digests:
            mine = [s for s in result.signatures if s.digest == digest]
            session.add(
                SignatureRecord(
                    image=result.image,
                    digest=digest,
                    signed_by=signed_by,
                    key_name=result.key_name,
                    identity=result.identity,
                    issuer=result.issuer,
                    formats=[s.format.value for s in mine],
                    signature_digests=[s.signature_digest for s in mine],
                )
            )
        session.flush()
        record_change(
            session,
            kind=AuditKind.sign,
            actor=signed_by,
            images=[result.image],
            digests=result.digests,
            details={
                "key_name": result.key_name,
                "key_id": result.key_id,
                "identity": result.identity,
                "issuer": result.issuer,
                "formats": [f.value for f in result.formats],
                "signatures": [s.signature_digest for s in result.signatures],
            },
        )


def signature_records(services: Services, *, image: str) -> list[SignatureRecordView]:
    """Signing records for ``image``'s name, newest first; only its digest's when it has one.

    A tag in ``image`` is ignored: records are kept by digest, and resolving a tag would ask
    the registry.
    """
    ref = ImageRef.parse(image)
    with session_scope(services.sessions) as session:
        query = select(SignatureRecord).where(SignatureRecord.image == ref.name)
        if ref.digest:
            query = query.where(SignatureRecord.digest == ref.digest)
        rows = session.scalars(
            query.order_by(SignatureRecord.created_at.desc(), SignatureRecord.id.desc()).limit(1000)
        )
        return [
            SignatureRecordView(
                image=r.image,
                digest=r.digest,
                signed_by=r.signed_by,
                key_name=r.key_name,
                identity=r.identity,
                issuer=r.issuer,
                formats=list(r.formats),
                signature_digests=list(r.signature_digests),
                created_at=r.created_at,
            )
            for r in rows
        ]
