"""Identity regexps are RE2: linear time whatever the caller sends, Go's syntax, whole-value
matches; patterns RE2 refuses, or too long, are 400s naming the pattern (over HTTP:
``tests/api/test_verify_hostile.py``).
"""

from __future__ import annotations

import datetime as dt
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from app.errors import InputError, VerificationError
from app.limits import MAX_PATTERN_CHARS
from app.verify.keyless_identity import OIDC_ISSUER_V2, KeylessIdentity, parse_identity
from app.verify.patterns import compile_identity_pattern
from tests.fixtures.sigstore import DEFAULT_ISSUER

# Backtracking ``re`` needs about 2**len(subject) steps to fail this pattern on this subject.
CATASTROPHIC = "c(.+)+#"
LONG_SUBJECT = "c" + "i" * 60 + "@example.com"


def certificate(subject: str, issuer: str) -> x509.Certificate:
    """A self-signed certificate with a SAN email and Fulcio's v2 issuer extension."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test")])
    now = dt.datetime.now(dt.UTC)
    encoded = issuer.encode()
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(minutes=10))
        .add_extension(x509.SubjectAlternativeName([x509.RFC822Name(subject)]), critical=True)
        .add_extension(
            x509.UnrecognizedExtension(OIDC_ISSUER_V2, bytes([0x0C, len(encoded)]) + encoded),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )


class TestCompile:
    @pytest.mark.parametrize("pattern", [r"(a)\1", "(?=x)y", "(?<!x)y", "a++", "("])
    def test_patterns_re2_refuses_are_input_errors_naming_the_pattern(self, pattern: str) -> None:
        with pytest.raises(InputError) as caught:
            compile_identity_pattern(pattern, what="certificate identity regexp")
        assert caught.value.code == "input.invalid_pattern"
        assert caught.value.http_status == 400
        assert repr(pattern) in caught.value.message

    def test_patterns_longer_than_the_limit_are_refused(self) -> None:
        compile_identity_pattern("a" * MAX_PATTERN_CHARS, what="x")
        with pytest.raises(InputError, match="limit is 1024") as caught:
            compile_identity_pattern("a" * (MAX_PATTERN_CHARS + 1), what="x")
        assert caught.value.code == "input.invalid_pattern"

    def test_go_syntax_and_whole_value_matching(self) -> None:
        def matches(pattern: str, value: str) -> bool:
            return compile_identity_pattern(pattern, what="x").matches(value)

        assert matches(r"https://github\.com/acme/.*", "https://github.com/acme/app/.github/w")
        assert not matches(
            "https://github.com/acme/", "https://evil.example/?https://github.com/acme/"
        )
        assert not matches("acme", "acme-x")
        assert matches(r"(?i)ci@EXAMPLE\.com", "ci@example.com")
        assert matches(r"v\d+\.\d+", "v1.22")
        assert matches(r"(?P<org>[a-z]+)/app", "acme/app")

    def test_a_catastrophic_pattern_on_a_long_value_finishes_at_once(self) -> None:
        started = time.monotonic()
        pattern = compile_identity_pattern(CATASTROPHIC, what="x")
        assert not pattern.matches(LONG_SUBJECT)
        assert time.monotonic() - started < 2.0


class TestIdentity:
    def test_parse_identity_refuses_with_the_pattern_and_code(self) -> None:
        with pytest.raises(InputError, match=r"certificate OIDC issuer regexp '\(\?=x\)'") as e:
            parse_identity(subject="a@b", issuer_regexp="(?=x)")
        assert e.value.code == "input.invalid_pattern"

    def test_a_stored_pattern_re2_refuses_fails_only_that_authority(self) -> None:
        # As an authority stored before RE2 is loaded (validated when stored, not on load).
        stored = KeylessIdentity.model_construct(subject_regex=r"(a)\1", issuer=DEFAULT_ISSUER)
        with pytest.raises(VerificationError) as caught:
            stored.match(certificate("aa", DEFAULT_ISSUER))
        assert caught.value.code == "verify.invalid_pattern"
        assert r"'(a)\\1'" in caught.value.message

    def test_a_catastrophic_pattern_does_not_match_and_does_not_hang(self) -> None:
        identity = parse_identity(subject_regexp=CATASTROPHIC, issuer=DEFAULT_ISSUER)
        with pytest.raises(VerificationError) as caught:
            identity.match(certificate(LONG_SUBJECT, DEFAULT_ISSUER))
        assert caught.value.code == "verify.identity_mismatch"
