"""Keyless identities: cosign-style fields, whole-value patterns, what a certificate names."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pydantic import ValidationError

from app.errors import InputError, VerificationError
from app.verify.keyless_identity import (
    OIDC_ISSUER_V1,
    SIGSTORE_OTHERNAME,
    KeylessIdentity,
    certificate_identity,
    parse_identity,
)
from tests.verify import cosign_wire as wire

GITHUB_OAUTH = "https://github.com/login/oauth"


class TestParseIdentity:
    def test_needs_one_of_each(self) -> None:
        with pytest.raises(InputError, match="issuer"):
            parse_identity(subject="a@b")
        with pytest.raises(InputError, match="subject"):
            parse_identity(subject="a@b", subject_regexp=".*", issuer="https://i")

    def test_refuses_invalid_regexp(self) -> None:
        with pytest.raises(InputError, match="not a valid regex"):
            parse_identity(subject_regexp="(", issuer="https://i")
        with pytest.raises(InputError, match="empty"):
            parse_identity(subject=" ", issuer="https://i")

    def test_maps_cosign_flags_to_the_keyless_identity(self) -> None:
        identity = parse_identity(subject_regexp="^a.*$", issuer="https://i")
        assert identity.subject_regex == "^a.*$"
        assert identity.issuer == "https://i"


class TestKeylessIdentity:
    @pytest.mark.parametrize(
        "fields",
        [
            {"issuer": "i"},
            {"subject": "s"},
            {"subject": "s", "subject_regex": "s", "issuer": "i"},
            {"subject": "s", "issuer": "i", "issuer_regex": "i"},
        ],
    )
    def test_needs_exactly_one_subject_and_one_issuer_rule(self, fields: dict[str, str]) -> None:
        with pytest.raises(ValidationError):
            KeylessIdentity(**fields)

    def test_an_invalid_regex_is_an_input_error(self) -> None:
        with pytest.raises(InputError) as caught:
            KeylessIdentity(subject_regex="(", issuer="i")
        assert caught.value.code == "input.invalid_pattern"

    def test_regex_must_match_the_whole_value(self, asset: Callable[[str], Path]) -> None:
        cert = wire.bundle_certificate(
            asset("sigstore/cosign/oci-attestation.sigstore.json").read_bytes()
        )
        anchored = KeylessIdentity(subject_regex=r"cody@soyland\.com", issuer_regex=r"https://.*")
        partial = KeylessIdentity(subject_regex=r"cody@soyland", issuer=GITHUB_OAUTH)
        assert anchored.match(cert) == ("cody@soyland.com", GITHUB_OAUTH)
        with pytest.raises(VerificationError) as caught:
            partial.match(cert)
        assert caught.value.code == "verify.identity_mismatch"

    def test_reads_v1_issuer_and_sigstore_other_name(self) -> None:
        # Older Fulcio certificates carry only the raw v1 issuer; username-style identities
        # are a Sigstore otherName SAN holding a DER UTF8String.
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([])
        now = dt.datetime.now(dt.UTC)
        other = x509.OtherName(SIGSTORE_OTHERNAME, b"\x0c\x09user@host")
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test")]))
            .public_key(key.public_key())
            .serial_number(1)
            .not_valid_before(now)
            .not_valid_after(now + dt.timedelta(minutes=10))
            .add_extension(x509.SubjectAlternativeName([other]), critical=True)
            .add_extension(
                x509.UnrecognizedExtension(OIDC_ISSUER_V1, b"https://issuer.test"), critical=False
            )
            .sign(key, hashes.SHA256())
        )
        assert certificate_identity(cert) == (["user@host"], "https://issuer.test")
        identity = KeylessIdentity(subject="user@host", issuer="https://issuer.test")
        assert identity.match(cert) == ("user@host", "https://issuer.test")
