"""Identity regexps are RE2: linear time whatever the caller sends, Go's syntax, whole-value
matches; patterns RE2 refuses, or too long, are 400s naming the pattern; and a hostile
pattern sent to a running server neither stalls the answer nor ``/healthz``.
"""

from __future__ import annotations

import datetime as dt
import secrets
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from app.auth.scopes import Scope
from app.auth.tokens import Principal, create_token
from app.config import Settings
from app.db.session import session_scope
from app.enforce.sign import sign_image
from app.errors import InputError, VerificationError
from app.services import Services
from app.verify.keyless import OIDC_ISSUER_V2, KeylessIdentity
from app.verify.patterns import MAX_PATTERN_CHARS, compile_identity_pattern
from app.verify.trust import parse_identity
from tests.fixtures.images import push_random_image
from tests.fixtures.registry import RegistryProcess
from tests.fixtures.server import HealthProbe, ServerProcess
from tests.fixtures.sigstore import DEFAULT_ISSUER, SigstoreInstance

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


class TestOverHttp:
    @pytest.fixture
    async def services(
        self, settings: Settings, clean_database: Any, sigstore_instance: SigstoreInstance
    ) -> AsyncIterator[Services]:
        local = settings.model_copy(
            update={"sigstore_trust_config": str(sigstore_instance.trust_config_path)}
        )
        svc = Services.from_settings(local)
        yield svc
        await svc.aclose()

    async def test_a_hostile_regexp_neither_stalls_the_answer_nor_healthz(
        self,
        services: Services,
        registry: RegistryProcess,
        sigstore_instance: SigstoreInstance,
        serve: Callable[..., ServerProcess],
    ) -> None:
        image, _ = await push_random_image(
            services.registry, f"{registry.host}/re2{secrets.token_hex(4)}/app"
        )
        await sign_image(
            services,
            image=str(image),
            principal=Principal(name="test", scopes=(Scope.parse("admin"),)),
            identity_token=sigstore_instance.mint_identity_token(LONG_SUBJECT),
        )
        with session_scope(services.sessions) as session:
            token = create_token(session, name="tenant", scopes=["verify:**"]).token
        server = serve()
        body = {
            "image": str(image),
            "certificate_identity_regexp": CATASTROPHIC,
            "certificate_oidc_issuer": DEFAULT_ISSUER,
            "trusted_root": sigstore_instance.trusted_root_path.read_text(),
        }
        headers = {"Authorization": f"Bearer {token}"}

        with HealthProbe(server.url) as probe:
            # Generous: Python's re would need about 2**60 steps here, and never answer.
            answer = httpx.post(f"{server.url}/v1/verify", json=body, headers=headers, timeout=30)

        assert answer.status_code == 422, answer.text
        rejections = answer.json()["error"]["details"]["rejections"]
        assert [r["code"] for r in rejections] == ["verify.identity_mismatch"]
        probe.assert_responsive(bound=5.0)

        refused = httpx.post(
            f"{server.url}/v1/verify",
            json={**body, "certificate_identity_regexp": r"(ci)\1"},
            headers=headers,
            timeout=30,
        )
        assert refused.status_code == 400
        assert refused.json()["error"]["code"] == "input.invalid_pattern"
        assert r"(ci)\\1" in refused.json()["error"]["message"]
