"""Legacy cosign keyless signatures: a ``.sig`` layer signed with a Fulcio certificate.

cosign's keyless ``.sig`` layers carry the signature, the Fulcio certificate (and chain)
and a Rekor entry with its signed entry timestamp (SET) in annotations, but no inclusion
proof, which sigstore-python cannot verify. ``verify_legacy_keyless`` checks them here on
``cryptography``, offline, against the trusted root (``app.verify.trusted_root``): the log
evidence through ``app.verify.transparency``, the chain to a Fulcio CA valid when the
entry was logged, the identity through ``app.verify.keyless_identity``, then the signature
and the payload's binding to the image.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    PolicyBuilder,
    Store,
)
from cryptography.x509.verification import (
    VerificationError as X509VerificationError,
)
from pydantic import ValidationError

from app.errors import VerificationError
from app.signing.signers import verify_signature
from app.verify.binding import bind_simple_signing, check_expected_digest
from app.verify.keyless_identity import KeylessIdentity
from app.verify.model import SignatureFormat, SignatureKind, VerifiedSignature
from app.verify.transparency import (
    RekorBundleAnnotation,
    decode_base64,
    verify_entry_body,
    verify_sct,
    verify_set,
)
from app.verify.trusted_root import ParsedTrustedRoot, parse_trusted_root


def _legacy_failure(message: str, code: str = "verify.keyless_failed") -> VerificationError:
    return VerificationError(f"legacy keyless signature: {message}", code=code)


@contextmanager
def _as_legacy_failure() -> Iterator[None]:
    """Report a failed transparency-log check as a failure of this signature."""
    try:
        yield
    except VerificationError as e:
        raise _legacy_failure(e.message, e.code) from e


def _load_pem_certificates(text: str, what: str) -> list[x509.Certificate]:
    try:
        return x509.load_pem_x509_certificates(text.encode())
    except ValueError as e:
        raise _legacy_failure(
            f"{what} is not PEM certificates", "evidence.malformed_signature"
        ) from e


def _verify_chain(
    root: ParsedTrustedRoot,
    *,
    certificate: x509.Certificate,
    presented_chain: list[x509.Certificate],
    when: dt.datetime,
) -> x509.Certificate:
    """Return the certificate of the CA that issued ``certificate``."""
    # The certificate chains to a Fulcio CA of the trusted root valid at `when`; the
    # chain annotation is never a trust anchor: each of its certificates must be one of
    # the trusted root's.
    trusted = {c for ca in root.authorities for c in ca.chain}
    strangers = [c for c in presented_chain if c not in trusted]
    if strangers:
        raise _legacy_failure(
            f"chain annotation holds a certificate not in the trusted root "
            f"({strangers[0].subject.rfc4514_string()})",
            "verify.untrusted_chain",
        )
    candidates = [ca for ca in root.authorities if ca.validity.covers(when) and ca.chain]
    if not candidates:
        raise _legacy_failure(f"no Fulcio CA in the trusted root is valid at {when}")
    ca_policy = ExtensionPolicy.webpki_defaults_ca().may_be_present(
        x509.ExtendedKeyUsage, Criticality.NON_CRITICAL, None
    )
    ee_policy = ExtensionPolicy.webpki_defaults_ee().may_be_present(
        x509.ExtendedKeyUsage, Criticality.NON_CRITICAL, None
    )
    problems = []
    for ca in candidates:
        verifier = (
            PolicyBuilder()
            .store(Store([ca.chain[-1]]))
            .time(when)
            .extension_policies(ca_policy=ca_policy, ee_policy=ee_policy)
            .build_client_verifier()
        )
        try:
            return verifier.verify(certificate, list(ca.chain[:-1])).chain[1]
        except (X509VerificationError, ValueError) as e:
            problems.append(str(e))
    raise _legacy_failure(
        f"certificate does not chain to a trusted Fulcio CA at {when}: {'; '.join(problems)}",
        "verify.untrusted_chain",
    )


def _check_code_signing(certificate: x509.Certificate) -> None:
    try:
        usage = certificate.extensions.get_extension_for_class(x509.KeyUsage).value
        extended = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound as e:
        raise _legacy_failure("certificate lacks key usage extensions") from e
    if not usage.digital_signature or ExtendedKeyUsageOID.CODE_SIGNING not in extended:
        raise _legacy_failure("certificate is not for code signing")


def verify_legacy_keyless(
    *,
    payload: bytes,
    signature_b64: str,
    certificate_pem: str,
    chain_pem: str | None,
    bundle_annotation: str,
    trusted_root_json: str,
    identity: KeylessIdentity,
    expected_digest: str,
) -> VerifiedSignature:
    """Verify a legacy cosign keyless ``.sig`` layer for ``expected_digest``.

    Takes the layer's simple-signing ``payload`` and its annotations (signature,
    certificate, chain, Rekor bundle). Checks, in order:
    (1) the bundle annotation is well formed;
    (2) its SET is signed by a Rekor key of the trusted root valid at ``integratedTime``;
    (3) the certificate chains to a Fulcio CA of the trusted root valid at
        ``integratedTime`` (so the certificate was valid then), carries an SCT from a CT
        log of the trusted root, is for code signing and names ``identity``;
    (4) the log entry (hashedrekord/0.0.1) records this signature, this certificate's
        key and the sha256 of this payload;
    (5) the signature verifies over the payload;
    (6) the payload names ``expected_digest``.
    Returns the verified signature; raises ``VerificationError`` at the first failure
    (``EvidenceError`` when the verified payload is not a simple-signing payload).
    """
    check_expected_digest(expected_digest)
    root = parse_trusted_root(trusted_root_json)
    # (1)
    if not bundle_annotation:
        raise _legacy_failure(
            "no dev.sigstore.cosign/bundle annotation: a keyless signature needs its Rekor entry",
            "verify.no_tlog",
        )
    try:
        entry = RekorBundleAnnotation.model_validate_json(bundle_annotation)
    except ValidationError as e:
        raise _legacy_failure(
            f"bundle annotation is malformed: {e.errors()[0]['msg']}",
            "evidence.malformed_signature",
        ) from e
    when = entry.integrated_at
    with _as_legacy_failure():
        signature = decode_base64(signature_b64, "signature annotation")
    certificates = _load_pem_certificates(certificate_pem, "certificate annotation")
    if len(certificates) != 1:
        raise _legacy_failure(
            "certificate annotation must hold one certificate", "evidence.malformed_signature"
        )
    certificate = certificates[0]
    chain = _load_pem_certificates(chain_pem, "chain annotation") if chain_pem else []
    # (2)
    with _as_legacy_failure():
        verify_set(root, entry=entry)
    # (3)
    issuer_certificate = _verify_chain(
        root, certificate=certificate, presented_chain=chain, when=when
    )
    with _as_legacy_failure():
        verify_sct(root, certificate=certificate, issuer=issuer_certificate)
    _check_code_signing(certificate)
    subject, issuer = identity.match(certificate)
    # (4)
    with _as_legacy_failure():
        verify_entry_body(entry, signature=signature, certificate=certificate, payload=payload)
    # (5)
    key = certificate.public_key()
    try:
        if not isinstance(key, ec.EllipticCurvePublicKey):  # Fulcio certifies ECDSA keys
            raise VerificationError(f"a {type(key).__name__} key", code="verify.unsupported_key")
        verify_signature(key, signature=signature, data=payload, hash_algorithms=(hashes.SHA256(),))
    except VerificationError as e:
        raise _legacy_failure("the signature does not verify over the payload") from e
    # (6) the payload is trusted only now.
    claims = bind_simple_signing(payload, expected_digest=expected_digest)
    return VerifiedSignature(
        format=SignatureFormat.legacy,
        kind=SignatureKind.keyless,
        subject=subject,
        issuer=issuer,
        signed_at=when,
        tlog=True,
        digest=expected_digest,
        annotations=claims.annotations,
        signed_identities=claims.signed_identities,
    )
