"""Binding: a verified payload must name the image digest it is presented for.

A signature proves who signed some bytes; only the bytes say *what* was signed. These
checks run after the signature verified and before anything in the payload counts:
an in-toto statement must carry the expected digest among its subjects, a simple-signing
payload must be of cosign's type and name it as ``docker-manifest-digest``. A signature
copied onto another image fails here with ``verify.digest_mismatch``. The signed
annotations come back with the binding, as the only payload content policy may see, and so
do the signed identities (the repository names the payload gives for the digest), which
``app.verify.identity`` checks against the repository being verified.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from app.errors import EvidenceError, VerificationError
from app.signing.payloads import (
    SIMPLE_SIGNING_TYPE,
    Statement,
    parse_simple_signing,
    parse_statement,
)

T = TypeVar("T")


class SignedClaims(BaseModel):
    """What a bound payload says beyond the digest: predicate, signed annotations, and the
    signed identities (simple-signing ``docker-reference``; the ``name`` of each statement
    subject carrying the digest), as written, unparsed."""

    model_config = ConfigDict(frozen=True)

    predicate_type: str | None = None
    predicate: dict[str, Any] | None = None
    annotations: dict[str, str] = Field(default_factory=dict)
    signed_identities: tuple[str, ...] = ()


def _parsed(parse: Callable[[bytes], T], payload: bytes) -> T:
    try:
        return parse(payload)
    except RecursionError as e:  # json's C scanner on absurdly nested input
        raise EvidenceError("signed payload is nested too deeply", code="evidence.invalid") from e


def check_expected_digest(expected_digest: str) -> None:
    """Refuse an expected digest that is not ``<algorithm>:<hex>`` before anything is
    verified against it (``verify.digest_mismatch``)."""
    if not re.fullmatch(r"[a-z0-9]+:[0-9a-f]{32,128}", expected_digest):
        raise VerificationError(
            f"expected digest {expected_digest!r} is not <algorithm>:<hex>",
            code="verify.digest_mismatch",
        )


def _mismatch(named: str, expected_digest: str) -> VerificationError:
    return VerificationError(
        f"the signed payload names {named}, not {expected_digest}", code="verify.digest_mismatch"
    )


def bind_statement(payload: bytes, *, expected_digest: str) -> SignedClaims:
    """Check that the in-toto statement ``payload`` names ``expected_digest`` (``alg:hex``).

    Raises ``EvidenceError`` when it is not a statement and ``VerificationError`` when no
    subject carries the digest. Annotations of the matching subjects are returned.
    """
    statement: Statement = _parsed(parse_statement, payload)
    if not statement.names_digest(expected_digest):
        named = [f"{alg}:{value}" for s in statement.subjects for alg, value in s.digest.items()]
        raise _mismatch(", ".join(named[:4]) or "no digest", expected_digest)
    algorithm, _, encoded = expected_digest.partition(":")
    annotations: dict[str, str] = {}
    names: list[str] = []
    for subject in statement.subjects:
        if subject.digest.get(algorithm) != encoded:
            continue
        if subject.annotations:
            annotations.update({k: str(v) for k, v in subject.annotations.items()})
        if subject.name:
            names.append(subject.name)
    return SignedClaims(
        predicate_type=statement.predicate_type,
        predicate=statement.predicate,
        annotations=annotations,
        signed_identities=tuple(dict.fromkeys(names)),
    )


def bind_simple_signing(payload: bytes, *, expected_digest: str) -> SignedClaims:
    """Check that the simple-signing ``payload`` is cosign's and names ``expected_digest``.

    Raises ``EvidenceError`` when it is not a simple-signing payload and
    ``VerificationError`` for another type or digest. ``optional`` is returned as the
    annotations and ``docker-reference`` as the signed identity.
    """
    signed = _parsed(parse_simple_signing, payload)
    if signed.type != SIMPLE_SIGNING_TYPE:
        raise VerificationError(
            f"payload type {signed.type!r} is not {SIMPLE_SIGNING_TYPE!r}",
            code="verify.bad_payload",
        )
    if signed.digest != expected_digest:
        raise _mismatch(signed.digest, expected_digest)
    return SignedClaims(
        annotations={k: str(v) for k, v in (signed.optional or {}).items()},
        signed_identities=(signed.docker_reference,) if signed.docker_reference else (),
    )
