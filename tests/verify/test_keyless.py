"""Keyless bundle verification: real third-party bundles (public-good and staging) and
bundles signed by the local Sigstore instance, each refusal shown by a test."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from app.errors import VerificationError
from app.signing.keyless import sign_statement_keyless
from app.signing.payloads import cosign_statement
from app.verify.keyless import verify_keyless_artifact, verify_keyless_bundle
from app.verify.keyless_identity import (
    KeylessIdentity,
    certificate_identity,
)
from app.verify.model import SignatureFormat, SignatureKind
from tests.fixtures.sigstore import DEFAULT_ISSUER, SigstoreInstance
from tests.verify import cosign_wire as wire

ROOTS = "sigstore/trusted-roots/"
GITHUB_OAUTH = "https://github.com/login/oauth"
ACTIONS = "https://token.actions.githubusercontent.com"
IMAGE_DIGEST = "sha256:" + "12" * 32
OTHER_DIGEST = "sha256:" + "34" * 32
REPOSITORY = "127.0.0.1:5000/team/app"


# --- real third-party bundles -----------------------------------------------------

# (bundle, artifact, trusted root, subject, issuer) that must verify (PROVENANCE.md).
ARTIFACT_BUNDLES = [
    (
        "sigstore-python/bundle_v3_github.whl.sigstore",
        "sigstore-python/bundle_v3_github.whl",
        "production.trusted_root.json",
        "https://github.com/trailofbits/rfc8785.py/.github/workflows/release.yml@refs/tags/v0.1.2",
        ACTIONS,
    ),
    (
        "sigstore-python/bundle_v3_github.whl.sigstore",
        "sigstore-python/bundle_v3_github.whl",
        "cosign.trusted_root_pgi.json",
        "https://github.com/trailofbits/rfc8785.py/.github/workflows/release.yml@refs/tags/v0.1.2",
        ACTIONS,
    ),
    (
        "sigstore-python/bundle_v3.txt.sigstore",
        "sigstore-python/bundle_v3.txt",
        "staging.trusted_root.json",
        "william@yossarian.net",
        GITHUB_OAUTH,
    ),
    (
        "sigstore-python/staging-rekor-v2.txt.sigstore.json",
        "sigstore-python/staging-rekor-v2.txt",
        "staging.trusted_root.json",
        "jku@goto.fi",
        GITHUB_OAUTH,
    ),
    (
        "sigstore-python/tsa-bundle.txt.sigstore",
        "sigstore-python/tsa-bundle.txt",
        "staging.trusted_root.json",
        "alexis.challande@trailofbits.com",
        "https://accounts.google.com",
    ),
]

# (bundle, trusted root, subject, issuer, subject digest, predicate type) DSSE bundles.
DSSE_BUNDLES = [
    (
        "cosign/oci-attestation.sigstore.json",
        "production.trusted_root.json",
        "cody@soyland.com",
        GITHUB_OAUTH,
        "sha256:732112270d7e59418a8c080b134b24cabd67d250d0d0147a97ed95ba5c280aa4",
        "https://cosign.sigstore.dev/attestation/v1",
    ),
    (
        "cosign/oci-attestation.sigstore.json",
        "cosign.trusted_root_pgi.json",
        "cody@soyland.com",
        GITHUB_OAUTH,
        "sha256:732112270d7e59418a8c080b134b24cabd67d250d0d0147a97ed95ba5c280aa4",
        "https://cosign.sigstore.dev/attestation/v1",
    ),
    (
        "sigstore-python/a.dsse.staging-rekor-v2.txt.sigstore.json",
        "staging.trusted_root.json",
        "https://github.com/sigstore-conformance/extremely-dangerous-public-oidc-beacon/"
        ".github/workflows/extremely-dangerous-oidc-beacon.yml@refs/heads/main",
        ACTIONS,
        "sha256:a0cfc71271d6e278e57cd332ff957c3f7043fdda354c4cbb190a30d56efa01bf",
        "https://slsa.dev/provenance/v1",
    ),
    (
        "sigstore-js/bundleV03-dsse.sigstore",
        "production.trusted_root.json",
        "brian@dehamer.com",
        GITHUB_OAUTH,
        "sha512:7bea9f6e7ff37f5fab0b36bf061200fff03099fd2fd696b91d04bc5e4f225eb9"
        "fd6e0cadcad54ba980f43fb352a99e8810b4e0abeb5c0ef2cf9108cd1f258b36",
        "https://github.com/npm/attestation/tree/main/specs/publish/v0.1",
    ),
    (
        "sigstore-js/bundleV02-dsse.sigstore",
        "production.trusted_root.json",
        "brian@dehamer.com",
        GITHUB_OAUTH,
        "sha512:7bea9f6e7ff37f5fab0b36bf061200fff03099fd2fd696b91d04bc5e4f225eb9"
        "fd6e0cadcad54ba980f43fb352a99e8810b4e0abeb5c0ef2cf9108cd1f258b36",
        "https://github.com/npm/attestation/tree/main/specs/publish/v0.1",
    ),
]


def _artifact(
    asset: Callable[[str], Path],
    bundle: str,
    *,
    artifact: str | bytes,
    root: str,
    identity: KeylessIdentity,
) -> Any:
    data = artifact if isinstance(artifact, bytes) else asset(f"sigstore/{artifact}").read_bytes()
    return verify_keyless_artifact(
        asset(f"sigstore/{bundle}").read_bytes(),
        artifact=data,
        trusted_root_json=asset(ROOTS + root).read_text(),
        identity=identity,
    )


def _dsse(
    asset: Callable[[str], Path],
    bundle: str,
    *,
    root: str,
    identity: KeylessIdentity,
    digest: str,
) -> Any:
    return verify_keyless_bundle(
        asset(f"sigstore/{bundle}").read_bytes(),
        trusted_root_json=asset(ROOTS + root).read_text(),
        identity=identity,
        expected_digest=digest,
    )


class TestThirdPartyBundles:
    @pytest.mark.parametrize(("bundle", "artifact", "root", "subject", "issuer"), ARTIFACT_BUNDLES)
    def test_artifact_bundle_verifies(
        self,
        asset: Callable[[str], Path],
        bundle: str,
        artifact: str,
        root: str,
        subject: str,
        issuer: str,
    ) -> None:
        verified = _artifact(
            asset,
            bundle,
            artifact=artifact,
            root=root,
            identity=KeylessIdentity(subject=subject, issuer=issuer),
        )
        assert (verified.subject, verified.issuer) == (subject, issuer)
        assert verified.kind is SignatureKind.keyless
        assert verified.tlog is True
        assert verified.signed_at is not None

    @pytest.mark.parametrize(
        ("bundle", "root", "subject", "issuer", "digest", "predicate"), DSSE_BUNDLES
    )
    def test_dsse_bundle_verifies_for_its_subject(
        self,
        asset: Callable[[str], Path],
        bundle: str,
        root: str,
        subject: str,
        issuer: str,
        digest: str,
        predicate: str,
    ) -> None:
        verified = _dsse(
            asset,
            bundle,
            root=root,
            identity=KeylessIdentity(subject=subject, issuer=issuer),
            digest=digest,
        )
        assert verified.format is SignatureFormat.bundle
        assert (verified.subject, verified.issuer) == (subject, issuer)
        assert verified.digest == digest
        assert verified.predicate_type == predicate

    def test_cosign_attestation_replayed_onto_another_image_is_refused(
        self, asset: Callable[[str], Path]
    ) -> None:
        with pytest.raises(VerificationError) as caught:
            _dsse(
                asset,
                "cosign/oci-attestation.sigstore.json",
                root="production.trusted_root.json",
                identity=KeylessIdentity(subject="cody@soyland.com", issuer=GITHUB_OAUTH),
                digest=OTHER_DIGEST,
            )
        assert caught.value.code == "verify.digest_mismatch"

    def test_staging_bundle_does_not_verify_against_production(
        self, asset: Callable[[str], Path]
    ) -> None:
        with pytest.raises(VerificationError) as caught:
            _artifact(
                asset,
                "sigstore-python/bundle_v3.txt.sigstore",
                artifact="sigstore-python/bundle_v3.txt",
                root="production.trusted_root.json",
                identity=KeylessIdentity(subject="william@yossarian.net", issuer=GITHUB_OAUTH),
            )
        assert caught.value.code == "verify.keyless_failed"
        assert "chain" in caught.value.message

    def test_cve_2022_36056_inconsistent_log_entry_is_refused(
        self, asset: Callable[[str], Path]
    ) -> None:
        data = asset("sigstore/sigstore-python/bundle_cve_2022_36056.txt.sigstore").read_bytes()
        subjects, issuer = certificate_identity(wire.bundle_certificate(data))
        with pytest.raises(VerificationError) as caught:
            verify_keyless_artifact(
                data,
                artifact=asset("sigstore/sigstore-python/bundle_cve_2022_36056.txt").read_bytes(),
                trusted_root_json=asset(ROOTS + "staging.trusted_root.json").read_text(),
                identity=KeylessIdentity(subject=subjects[0], issuer=issuer),
            )
        assert "inconsistent" in caught.value.message

    def test_bundle_without_signed_time_is_refused(self, asset: Callable[[str], Path]) -> None:
        with pytest.raises(VerificationError) as caught:
            _artifact(
                asset,
                "sigstore-python/bundle_v3_no_signed_time.txt.sigstore.json",
                artifact="sigstore-python/bundle_v3_no_signed_time.txt",
                root="staging.trusted_root.json",
                identity=KeylessIdentity(subject_regex=".*", issuer_regex=".*"),
            )
        assert caught.value.code == "evidence.malformed_bundle"
        assert "inclusion promise or signed timestamp" in caught.value.message

    def test_v01_bundle_without_inclusion_proof_is_refused(
        self, asset: Callable[[str], Path]
    ) -> None:
        with pytest.raises(VerificationError) as caught:
            _dsse(
                asset,
                "sigstore-js/bundleV01-dsse-no-proof.sigstore",
                root="production.trusted_root.json",
                identity=KeylessIdentity(subject="brian@dehamer.com", issuer=GITHUB_OAUTH),
                digest=DSSE_BUNDLES[3][4],
            )
        assert caught.value.code == "evidence.malformed_bundle"
        assert "inclusionProof" in caught.value.message

    def test_intoto_entry_is_refused(self, asset: Callable[[str], Path]) -> None:
        with pytest.raises(VerificationError) as caught:
            _dsse(
                asset,
                "sigstore-js/bundleV03-intoto.sigstore",
                root="production.trusted_root.json",
                identity=KeylessIdentity(subject="brian@dehamer.com", issuer=GITHUB_OAUTH),
                digest=DSSE_BUNDLES[3][4],
            )
        assert "dsse/hashedrekord 0.0.1" in caught.value.message

    def test_artifact_that_was_not_signed_is_refused(self, asset: Callable[[str], Path]) -> None:
        with pytest.raises(VerificationError) as caught:
            _artifact(
                asset,
                "sigstore-python/bundle_v3.txt.sigstore",
                artifact=b"something else",
                root="staging.trusted_root.json",
                identity=KeylessIdentity(subject="william@yossarian.net", issuer=GITHUB_OAUTH),
            )
        assert caught.value.code == "verify.digest_mismatch"

    @pytest.mark.parametrize(
        "data", [b"", b"{", b"[]", b'{"mediaType": "application/json"}', b"\xff\xfe"]
    )
    def test_malformed_bundle_json_is_refused(
        self, asset: Callable[[str], Path], data: bytes
    ) -> None:
        with pytest.raises(VerificationError) as caught:
            verify_keyless_bundle(
                data,
                trusted_root_json=asset(ROOTS + "production.trusted_root.json").read_text(),
                identity=KeylessIdentity(subject="a", issuer="b"),
                expected_digest=IMAGE_DIGEST,
            )
        assert caught.value.code == "evidence.malformed_bundle"

    def test_unusable_trusted_root_is_refused(self, asset: Callable[[str], Path]) -> None:
        for root in ('{"mediaType": 3}', "not json", " " * (4 * 1024 * 1024 + 1)):
            with pytest.raises(VerificationError) as caught:
                verify_keyless_bundle(
                    asset("sigstore/cosign/oci-attestation.sigstore.json").read_bytes(),
                    trusted_root_json=root,
                    identity=KeylessIdentity(subject="cody@soyland.com", issuer=GITHUB_OAUTH),
                    expected_digest=DSSE_BUNDLES[0][4],
                )
            assert caught.value.code == "verify.trusted_root"


# --- bundles signed by the local Sigstore instance ---------------------------------


@pytest.fixture(scope="module")
def local_bundle(sigstore_instance: SigstoreInstance) -> bytes:
    """A cosign v3 image signature for IMAGE_DIGEST, signed keylessly by ci@example.com."""
    statement = cosign_statement(
        digest=IMAGE_DIGEST, repository=REPOSITORY, annotations={"pipeline": "release"}
    )
    token = sigstore_instance.mint_identity_token("ci@example.com")
    return sign_statement_keyless(
        statement=statement, identity_token=token, trust=sigstore_instance.trust_config_path
    ).encode()


def _verify_local(
    instance: SigstoreInstance,
    data: bytes,
    identity: KeylessIdentity | None = None,
    digest: str = IMAGE_DIGEST,
) -> Any:
    return verify_keyless_bundle(
        data,
        trusted_root_json=instance.trusted_root_path.read_text(),
        identity=identity or KeylessIdentity(subject="ci@example.com", issuer=DEFAULT_ISSUER),
        expected_digest=digest,
    )


def _with_payload(data: bytes, payload: bytes) -> bytes:
    bundle = json.loads(data)
    bundle["dsseEnvelope"]["payload"] = base64.b64encode(payload).decode()
    return json.dumps(bundle).encode()


class TestLocalKeylessBundle:
    def test_verifies_with_identity_time_and_annotations(
        self, sigstore_instance: SigstoreInstance, local_bundle: bytes
    ) -> None:
        verified = _verify_local(sigstore_instance, local_bundle)
        assert verified.subject == "ci@example.com"
        assert verified.issuer == DEFAULT_ISSUER
        assert verified.digest == IMAGE_DIGEST
        assert verified.tlog is True
        assert verified.signed_at is not None
        assert verified.predicate_type == "https://sigstore.dev/cosign/sign/v1"
        assert verified.annotations == {"pipeline": "release"}

    def test_independent_verifier_agrees(
        self, sigstore_instance: SigstoreInstance, local_bundle: bytes, tmp_path: Path
    ) -> None:
        path = tmp_path / "bundle.json"
        path.write_bytes(local_bundle)
        result = sigstore_instance.verify_with_sigstore_js(
            path, identity="ci@example.com", issuer=DEFAULT_ISSUER
        )
        assert result.ok, result.output

    def test_regex_identity_verifies(
        self, sigstore_instance: SigstoreInstance, local_bundle: bytes
    ) -> None:
        identity = KeylessIdentity(
            subject_regex=r"[a-z]+@example\.com", issuer_regex=r"https://oidc\.sealgate\.test"
        )
        assert _verify_local(sigstore_instance, local_bundle, identity).subject == "ci@example.com"

    @pytest.mark.parametrize(
        "identity",
        [
            KeylessIdentity(subject="someone@example.com", issuer=DEFAULT_ISSUER),
            KeylessIdentity(subject="ci@example.com", issuer="https://other-issuer.test"),
            KeylessIdentity(subject_regex=r".*@other\.com", issuer=DEFAULT_ISSUER),
            KeylessIdentity(subject="ci@example.com", issuer_regex=r"https://oidc"),
        ],
        ids=["wrong-subject", "wrong-issuer", "subject-regex", "issuer-regex-partial"],
    )
    def test_wrong_identity_is_refused(
        self, sigstore_instance: SigstoreInstance, local_bundle: bytes, identity: KeylessIdentity
    ) -> None:
        with pytest.raises(VerificationError) as caught:
            _verify_local(sigstore_instance, local_bundle, identity)
        assert caught.value.code == "verify.identity_mismatch"

    def test_same_subject_from_another_issuer_is_refused(
        self, sigstore_instance: SigstoreInstance
    ) -> None:
        token = sigstore_instance.mint_identity_token(
            "ci@example.com", issuer="https://attacker-idp.test"
        )
        data = sign_statement_keyless(
            statement=cosign_statement(digest=IMAGE_DIGEST, repository=REPOSITORY),
            identity_token=token,
            trust=sigstore_instance.trust_config_path,
        ).encode()
        with pytest.raises(VerificationError) as caught:
            _verify_local(sigstore_instance, data)
        assert caught.value.code == "verify.identity_mismatch"
        assert "https://attacker-idp.test" in caught.value.message

    def test_replayed_onto_another_digest_is_refused(
        self, sigstore_instance: SigstoreInstance, local_bundle: bytes
    ) -> None:
        with pytest.raises(VerificationError) as caught:
            _verify_local(sigstore_instance, local_bundle, digest=OTHER_DIGEST)
        assert caught.value.code == "verify.digest_mismatch"

    def test_tampered_statement_is_refused(
        self, sigstore_instance: SigstoreInstance, local_bundle: bytes, tmp_path: Path
    ) -> None:
        # The attacker rewrites the subject to their image; the signature no longer covers it.
        tampered = _with_payload(
            local_bundle, cosign_statement(digest=OTHER_DIGEST, repository=REPOSITORY)
        )
        with pytest.raises(VerificationError) as caught:
            _verify_local(sigstore_instance, tampered, digest=OTHER_DIGEST)
        assert caught.value.code == "verify.keyless_failed"
        path = tmp_path / "tampered.json"
        path.write_bytes(tampered)
        assert not sigstore_instance.verify_with_sigstore_js(path, identity="ci@example.com").ok

    def test_envelope_signature_that_does_not_verify_is_refused(
        self, sigstore_instance: SigstoreInstance, local_bundle: bytes
    ) -> None:
        bundle = json.loads(local_bundle)
        signature = bytearray(base64.b64decode(bundle["dsseEnvelope"]["signatures"][0]["sig"]))
        signature[-1] ^= 0x01
        bundle["dsseEnvelope"]["signatures"][0]["sig"] = base64.b64encode(signature).decode()
        with pytest.raises(VerificationError) as caught:
            _verify_local(sigstore_instance, json.dumps(bundle).encode())
        assert caught.value.code == "verify.keyless_failed"

    def test_another_instances_trusted_root_is_refused(
        self,
        skewed_sigstore_instance: SigstoreInstance,
        local_bundle: bytes,
    ) -> None:
        with pytest.raises(VerificationError) as caught:
            verify_keyless_bundle(
                local_bundle,
                trusted_root_json=skewed_sigstore_instance.trusted_root_path.read_text(),
                identity=KeylessIdentity(subject="ci@example.com", issuer=DEFAULT_ISSUER),
                expected_digest=IMAGE_DIGEST,
            )
        assert caught.value.code == "verify.keyless_failed"

    def test_certificate_outside_its_validity_at_every_verified_time_is_refused(
        self, skewed_sigstore_instance: SigstoreInstance, tmp_path: Path
    ) -> None:
        # This Fulcio's clock runs an hour ahead: the ten-minute certificate is not yet valid
        # when Rekor integrates the entry nor when the TSA timestamps the signature.
        instance = skewed_sigstore_instance
        data = sign_statement_keyless(
            statement=cosign_statement(digest=IMAGE_DIGEST, repository=REPOSITORY),
            identity_token=instance.mint_identity_token("ci@example.com"),
            trust=instance.trust_config_path,
        ).encode()
        with pytest.raises(VerificationError) as caught:
            _verify_local(instance, data)
        assert caught.value.code == "verify.keyless_failed"
        assert "not valid at validation time" in caught.value.message
        path = tmp_path / "expired.json"
        path.write_bytes(data)
        assert not instance.verify_with_sigstore_js(path, identity="ci@example.com").ok

    def test_bundle_without_timestamps_is_refused(
        self, sigstore_instance: SigstoreInstance, local_bundle: bytes
    ) -> None:
        bundle = json.loads(local_bundle)
        bundle["verificationMaterial"].pop("timestampVerificationData", None)
        del bundle["verificationMaterial"]["tlogEntries"][0]["inclusionPromise"]
        with pytest.raises(VerificationError):
            _verify_local(sigstore_instance, json.dumps(bundle).encode())
