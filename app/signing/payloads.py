"""What gets signed: cosign's simple-signing payload, the cosign v3 in-toto Statement, DSSE PAE.

Two payload shapes name an image digest:

- the *simple-signing* payload of legacy cosign signatures (``sha256-<hex>.sig`` tags),
  ``{"critical": {"identity": {"docker-reference": R}, "image": {"docker-manifest-digest": D},
  "type": "cosign container image signature"}, "optional": {...} | null}``. We write the
  lowercase ``docker-manifest-digest`` and read either case (old cosign wrote
  ``Docker-manifest-digest``);
- the in-toto *Statement v1* of cosign v3 image signatures, with predicateType
  ``https://sigstore.dev/cosign/sign/v1`` and an empty predicate. cosign
  (``cmd/cosign/cli/sign/sign.go``, ``signDigestBundle``) puts the user's ``-a k=v``
  annotations on the statement's subject (``subject[0].annotations``); we do the same and also
  give the subject a ``name`` (the repository), which cosign leaves out and verifiers ignore.

Signatures over DSSE envelopes cover the Pre-Authentication Encoding (``dsse_pae``), never the
payload bytes themselves. Parsers return frozen models or raise ``EvidenceError``: payloads
come from registries and are never trusted.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict

from app.errors import EvidenceError, InputError
from app.limits import MAX_PAYLOAD_BYTES
from app.oci.digests import parse_digest

SIMPLE_SIGNING_TYPE = "cosign container image signature"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
COSIGN_SIGN_PREDICATE = "https://sigstore.dev/cosign/sign/v1"
IN_TOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"


class SimpleSigning(BaseModel):
    """A parsed simple-signing payload: the image it names and the unsigned extras."""

    model_config = ConfigDict(frozen=True)

    docker_reference: str
    digest: str
    type: str
    optional: dict[str, Any] | None = None


class StatementSubject(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str | None = None
    digest: dict[str, str]
    annotations: dict[str, Any] | None = None


class Statement(BaseModel):
    """A parsed in-toto Statement (v0.1 or v1): its subjects and predicate."""

    model_config = ConfigDict(frozen=True)

    type: str
    subjects: tuple[StatementSubject, ...]
    predicate_type: str
    predicate: dict[str, Any] | None = None

    def names_digest(self, digest: str) -> bool:
        """Whether one subject carries ``digest`` (``alg:hex``) under its algorithm."""
        algorithm, _, encoded = digest.partition(":")
        return any(s.digest.get(algorithm) == encoded for s in self.subjects)


def _canonical(value: Any) -> bytes:
    # Compact, sorted keys: stable bytes, so an identical payload dedupes to one layer.
    return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode()


def _string_annotations(annotations: dict[str, Any] | None) -> dict[str, Any]:
    annotations = dict(annotations or {})
    for key in annotations:
        if not isinstance(key, str) or not key:
            raise InputError(f"annotation key {key!r} must be a non-empty string")
    return annotations


def simple_signing_payload(
    *, docker_reference: str, digest: str, annotations: dict[str, Any] | None = None
) -> bytes:
    """The simple-signing payload for ``digest`` pushed as ``docker_reference`` (no tag/digest).

    ``annotations`` become ``optional`` (``null`` when empty, as cosign writes it).
    Raises ``InputError`` on a malformed digest or annotation key.
    """
    parse_digest(digest)
    optional = _string_annotations(annotations) or None
    return _canonical(
        {
            "critical": {
                "identity": {"docker-reference": docker_reference},
                "image": {"docker-manifest-digest": digest},
                "type": SIMPLE_SIGNING_TYPE,
            },
            "optional": optional,
        }
    )


def _load_object(data: bytes, what: str) -> dict[str, Any]:
    if len(data) > MAX_PAYLOAD_BYTES:
        raise EvidenceError(f"{what} is larger than {MAX_PAYLOAD_BYTES} bytes")
    try:
        value = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise EvidenceError(f"{what} is not valid JSON: {e}") from e
    if not isinstance(value, dict):
        raise EvidenceError(f"{what} is not a JSON object")
    return value


def parse_simple_signing(data: bytes) -> SimpleSigning:
    """Parse a simple-signing payload; raise ``EvidenceError`` when it is not one.

    Reads ``docker-manifest-digest`` in either case; the digest must be well formed.
    """
    doc = _load_object(data, "simple-signing payload")
    critical = doc.get("critical")
    if not isinstance(critical, dict):
        raise EvidenceError("simple-signing payload has no 'critical' object")
    identity = critical.get("identity")
    image = critical.get("image")
    if not isinstance(identity, dict) or not isinstance(image, dict):
        raise EvidenceError("simple-signing payload lacks critical.identity or critical.image")
    reference = identity.get("docker-reference")
    digest = image.get("docker-manifest-digest", image.get("Docker-manifest-digest"))
    kind = critical.get("type")
    if not isinstance(reference, str) or not isinstance(digest, str) or not isinstance(kind, str):
        raise EvidenceError(
            "simple-signing payload needs string docker-reference, docker-manifest-digest, type"
        )
    try:
        parse_digest(digest)
    except InputError as e:
        raise EvidenceError(f"simple-signing payload names a bad digest: {e.message}") from e
    optional = doc.get("optional")
    if optional is not None and not isinstance(optional, dict):
        raise EvidenceError("simple-signing payload 'optional' must be an object or null")
    return SimpleSigning(docker_reference=reference, digest=digest, type=kind, optional=optional)


def cosign_statement(
    *, digest: str, repository: str, annotations: dict[str, Any] | None = None
) -> bytes:
    """The cosign v3 image-signature Statement for ``digest`` in ``repository``.

    ``repository`` is the normalised ``registry/repository``. Annotations go on the subject
    (as cosign puts them). Raises ``InputError`` on a malformed digest or annotation key.
    """
    algorithm, _, encoded = parse_digest(digest).partition(":")
    subject: dict[str, Any] = {"name": repository, "digest": {algorithm: encoded}}
    extra = _string_annotations(annotations)
    if extra:
        subject["annotations"] = extra
    return _canonical(
        {
            "_type": STATEMENT_TYPE,
            "subject": [subject],
            "predicateType": COSIGN_SIGN_PREDICATE,
            "predicate": {},
        }
    )


def parse_statement(data: bytes) -> Statement:
    """Parse an in-toto Statement; raise ``EvidenceError`` when it is not one.

    Accepts Statement v1 and v0.1 ``_type`` values; needs at least one subject with a
    ``digest`` map of strings and a string ``predicateType``.
    """
    doc = _load_object(data, "in-toto statement")
    kind = doc.get("_type")
    if kind not in (STATEMENT_TYPE, "https://in-toto.io/Statement/v0.1"):
        raise EvidenceError(f"in-toto statement has unknown _type {kind!r}")
    raw_subjects = doc.get("subject")
    if not isinstance(raw_subjects, list) or not raw_subjects:
        raise EvidenceError("in-toto statement has no subject")
    subjects = []
    for raw in raw_subjects:
        if not isinstance(raw, dict):
            raise EvidenceError("in-toto statement subject is not an object")
        digests = raw.get("digest")
        if not isinstance(digests, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in digests.items()
        ):
            raise EvidenceError("in-toto statement subject needs a digest map of strings")
        name = raw.get("name")
        annotations = raw.get("annotations")
        subjects.append(
            StatementSubject(
                name=name if isinstance(name, str) else None,
                digest=digests,
                annotations=annotations if isinstance(annotations, dict) else None,
            )
        )
    predicate_type = doc.get("predicateType")
    if not isinstance(predicate_type, str):
        raise EvidenceError("in-toto statement has no predicateType")
    predicate = doc.get("predicate")
    return Statement(
        type=kind,
        subjects=tuple(subjects),
        predicate_type=predicate_type,
        predicate=predicate if isinstance(predicate, dict) else None,
    )


def dsse_pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 Pre-Authentication Encoding: what a DSSE signature actually signs.

    ``"DSSEv1" SP LEN(type) SP type SP LEN(payload) SP payload``, lengths as ASCII decimal
    byte counts (DSSE protocol.md).
    """
    type_bytes = payload_type.encode()
    return b"DSSEv1 %d %b %d %b" % (len(type_bytes), type_bytes, len(payload), payload)
