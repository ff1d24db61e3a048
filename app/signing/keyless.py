"""Keyless signing: a DSSE in-toto statement signed through Sigstore (Fulcio + Rekor).

The caller brings an OIDC identity token (a CI job's own token), so the Fulcio
certificate names the caller's identity, never Sealgate's. Which Sigstore instance
is used comes from a trust config source: ``public-good``, ``staging`` or the path
of a ``ClientTrustConfig`` JSON file (a private instance, or the local one the tests
start). The result is a Sigstore bundle v0.3 JSON whose DSSE envelope holds the
statement unchanged. Every failure of sigstore-python or of the network surfaces as
``SigningError``.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from pydantic import BaseModel, ConfigDict
from sigstore.dsse import Statement
from sigstore.errors import Error as SigstoreError
from sigstore.models import Bundle, ClientTrustConfig
from sigstore.oidc import IdentityError, IdentityToken
from sigstore.sign import Signer, SigningContext

from app.errors import SigningError
from app.signing.publish import (
    BUNDLE_ANNOTATION,
    CERTIFICATE_ANNOTATION,
    CHAIN_ANNOTATION,
    SIGNATURE_ANNOTATION,
)

PUBLIC_GOOD = "public-good"
STAGING = "staging"

TrustConfigSource = str | Path
"""``"public-good"``, ``"staging"``, or the path of a ``ClientTrustConfig`` JSON file."""


def load_trust_config(source: TrustConfigSource) -> ClientTrustConfig:
    """Read the Sigstore client trust config named by ``source``.

    ``public-good`` and ``staging`` go through sigstore-python's TUF client (network);
    any other value is read as a ``ClientTrustConfig`` JSON file. Raises
    ``SigningError`` when the file is missing or malformed or TUF cannot be reached.
    """
    try:
        if source == PUBLIC_GOOD:
            return ClientTrustConfig.production()
        if source == STAGING:
            return ClientTrustConfig.staging()
        text = Path(source).read_text()
        return ClientTrustConfig.from_json(text)
    except OSError as e:
        raise SigningError(
            f"cannot read Sigstore trust config {source}: {e.strerror or e}",
            code="signing.trust_config",
        ) from e
    except Exception as e:  # TUF, JSON and protobuf errors have no common base class.
        raise SigningError(
            f"Sigstore trust config {source} is not usable: {e}", code="signing.trust_config"
        ) from e


def parse_identity_token(raw: str) -> IdentityToken:
    """Parse (not verify: Fulcio does that) an OIDC identity token for Sigstore.

    Raises ``SigningError`` when the token is malformed, lacks the claims OIDC requires
    (``iss``, ``sub``, ``aud`` = ``sigstore``, ``iat``, ``exp``) or is expired.
    """
    try:
        return IdentityToken(raw.strip())
    except IdentityError as e:
        raise SigningError(
            f"the OIDC identity token is not usable: {e}", code="signing.identity_token"
        ) from e


def _sign(
    *,
    identity_token: str,
    trust: TrustConfigSource | ClientTrustConfig,
    sign: Callable[[Signer], Bundle],
) -> Bundle:
    """Run ``sign`` with a signer holding a fresh Fulcio certificate for the token."""
    token = parse_identity_token(identity_token)
    config = trust if isinstance(trust, ClientTrustConfig) else load_trust_config(trust)
    try:
        context = SigningContext.from_trust_config(config)
        # cache=True is required, not an optimisation: without it sigstore-python 4.5.1
        # draws a fresh ephemeral key on every access, so the CSR and the signature use
        # different keys and Rekor refuses the entry.
        with context.signer(token, cache=True) as signer:
            return sign(signer)
    except SigstoreError as e:
        raise SigningError(f"Sigstore signing failed: {e}", code="signing.sigstore") from e
    except Exception as e:  # the Fulcio/Rekor/TSA clients raise requests and bare errors
        raise SigningError(
            f"Sigstore signing failed: {type(e).__name__}: {e}", code="signing.sigstore"
        ) from e


def sign_statement_keyless(
    *, statement: bytes, identity_token: str, trust: TrustConfigSource | ClientTrustConfig
) -> str:
    """Sign an in-toto statement keylessly and return the Sigstore bundle v0.3 JSON.

    ``statement`` is the exact JSON bytes of the in-toto Statement (they are signed
    as they are); ``identity_token`` is the caller's OIDC token; ``trust`` says which
    Sigstore instance to use (a source string/path, or an already loaded config).
    Raises ``SigningError`` for a malformed statement or token and for any failure of
    Fulcio, Rekor or the timestamp authority.
    """
    try:
        parsed = Statement(statement)
    except SigstoreError as e:
        raise SigningError(f"not an in-toto statement: {e}", code="signing.statement") from e
    bundle = _sign(
        identity_token=identity_token, trust=trust, sign=lambda signer: signer.sign_dsse(parsed)
    )
    return bundle.to_json()


class LegacyKeylessSignature(BaseModel):
    """A cosign legacy keyless signature: what goes in a ``.sig`` layer's annotations."""

    model_config = ConfigDict(frozen=True)

    signature: str  # base64 ECDSA signature over the payload bytes
    certificate: str  # Fulcio leaf certificate, PEM
    chain: str  # the Fulcio CA chain from the trusted root, PEM
    bundle: str  # {"SignedEntryTimestamp", "Payload": {body, integratedTime, logIndex, logID}}

    def annotations(self) -> dict[str, str]:
        """cosign's layer annotations for this signature."""
        return {
            SIGNATURE_ANNOTATION: self.signature,
            CERTIFICATE_ANNOTATION: self.certificate,
            CHAIN_ANNOTATION: self.chain,
            BUNDLE_ANNOTATION: self.bundle,
        }


def sign_payload_keyless(
    *, payload: bytes, identity_token: str, trust: TrustConfigSource | ClientTrustConfig
) -> LegacyKeylessSignature:
    """Sign a simple-signing payload keylessly the way cosign's legacy format stores it.

    The payload bytes are signed (ECDSA P-256, SHA-256) with a Fulcio certificate and
    logged in Rekor as a hashedrekord entry; the entry and its SET become cosign's
    ``dev.sigstore.cosign/bundle`` annotation. Raises ``SigningError`` like
    ``sign_statement_keyless``.
    """
    config = trust if isinstance(trust, ClientTrustConfig) else load_trust_config(trust)
    bundle = json.loads(
        _sign(
            identity_token=identity_token,
            trust=config,
            sign=lambda signer: signer.sign_artifact(payload),
        ).to_json()
    )
    material = bundle["verificationMaterial"]
    (entry,) = material["tlogEntries"]
    leaf = x509.load_der_x509_certificate(base64.b64decode(material["certificate"]["rawBytes"]))
    rekor_bundle = {
        "SignedEntryTimestamp": entry["inclusionPromise"]["signedEntryTimestamp"],
        "Payload": {
            "body": entry["canonicalizedBody"],
            "integratedTime": int(entry["integratedTime"]),
            "logIndex": int(entry["logIndex"]),
            "logID": base64.b64decode(entry["logId"]["keyId"]).hex(),
        },
    }
    return LegacyKeylessSignature(
        signature=bundle["messageSignature"]["signature"],
        certificate=leaf.public_bytes(serialization.Encoding.PEM).decode(),
        chain=_issuing_chain(config, leaf),
        bundle=json.dumps(rekor_bundle, separators=(",", ":")),
    )


def _issuing_chain(config: ClientTrustConfig, leaf: x509.Certificate) -> str:
    """PEM of the trusted root's Fulcio certificates from ``leaf``'s issuer up to the root
    (what cosign writes in ``dev.sigstore.cosign/chain``)."""
    known = config.trusted_root.get_fulcio_certs()
    chain: list[x509.Certificate] = []
    current = leaf
    while len(chain) < len(known):
        issuer = next((c for c in known if c.subject == current.issuer), None)
        if issuer is None:
            break
        chain.append(issuer)
        if issuer.subject == issuer.issuer:
            break
        current = issuer
    if not chain:
        raise SigningError(
            "the Fulcio certificate's issuer is not in the trusted root", code="signing.sigstore"
        )
    return "".join(c.public_bytes(serialization.Encoding.PEM).decode() for c in chain)
