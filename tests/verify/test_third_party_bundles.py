"""Real Sigstore bundles written by cosign and sigstore-js, verified offline through
``app.verify.bundle`` with their trusted roots; the negative ones must fail.

Provenance: tests/assets/PROVENANCE.md (sigstore/cosign, sigstore/sigstore-js).
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from app.errors import Error, VerificationError
from app.oci.client import RegistryClient
from app.verify.bundle import verify_bundle
from app.verify.evidence import collect_evidence
from app.verify.keyless_identity import parse_identity
from app.verify.model import SignatureKind
from app.verify.trust import TrustAuthority, key_authority, keyless_authority
from app.verify.trusted_root import TrustedRootRef
from tests.fixtures.images import push_random_image, registry_settings
from tests.fixtures.registry import RegistryProcess
from tests.verify import cosign_wire as wire

COSIGN_BUNDLE = "sigstore/cosign/oci-attestation.sigstore.json"
COSIGN_DIGEST = "sha256:732112270d7e59418a8c080b134b24cabd67d250d0d0147a97ed95ba5c280aa4"
COSIGN_SIGNER = ("cody@soyland.com", "https://github.com/login/oauth")
JS_DIGEST = (
    "sha512:7bea9f6e7ff37f5fab0b36bf061200fff03099fd2fd696b91d04bc5e4f225eb9"
    "fd6e0cadcad54ba980f43fb352a99e8810b4e0abeb5c0ef2cf9108cd1f258b36"
)
JS_SIGNER = ("brian@dehamer.com", "https://github.com/login/oauth")

Asset = Callable[[str], Path]


def keyless(
    asset: Asset, *, signer: tuple[str, str], root: str = "production.trusted_root.json"
) -> TrustAuthority:
    return keyless_authority(
        name="upstream",
        identity=parse_identity(subject=signer[0], issuer=signer[1]),
        trusted_root=TrustedRootRef.resolve(str(asset(f"sigstore/trusted-roots/{root}"))),
    )


class TestCosignAttestationBundle:
    @pytest.mark.parametrize(
        "root", ["production.trusted_root.json", "cosign.trusted_root_pgi.json"]
    )
    def test_verifies_offline_over_its_oci_digest(self, asset: Asset, root: str) -> None:
        verified = verify_bundle(
            asset(COSIGN_BUNDLE).read_bytes(),
            authority=keyless(asset, signer=COSIGN_SIGNER, root=root),
            expected_digest=COSIGN_DIGEST,
            signature_digest="sha256:" + "0" * 64,
        )

        assert verified.kind is SignatureKind.keyless
        assert (verified.subject, verified.issuer) == COSIGN_SIGNER
        assert verified.authority == "upstream"
        assert verified.tlog is True and verified.signed_at is not None
        assert verified.predicate_type == "https://cosign.sigstore.dev/attestation/v1"
        assert verified.signature_digest == "sha256:" + "0" * 64

    def test_identity_given_as_regexps(self, asset: Asset) -> None:
        authority = keyless_authority(
            name="re",
            identity=parse_identity(
                subject_regexp=r".*@soyland\.com", issuer_regexp=r"https://github\.com/.*"
            ),
            trusted_root=TrustedRootRef.builtin("public-good"),
        )
        verified = verify_bundle(
            asset(COSIGN_BUNDLE).read_bytes(), authority=authority, expected_digest=COSIGN_DIGEST
        )
        assert verified.subject == "cody@soyland.com"

    def test_refused_for_another_digest(self, asset: Asset) -> None:
        with pytest.raises(VerificationError) as e:
            verify_bundle(
                asset(COSIGN_BUNDLE).read_bytes(),
                authority=keyless(asset, signer=COSIGN_SIGNER),
                expected_digest="sha256:" + "1" * 64,
            )
        assert e.value.code == "verify.digest_mismatch"

    @pytest.mark.parametrize(
        "signer",
        [
            ("someone@else.com", COSIGN_SIGNER[1]),
            (COSIGN_SIGNER[0], "https://accounts.google.com"),
        ],
        ids=["wrong-identity", "wrong-issuer"],
    )
    def test_refused_for_another_identity_or_issuer(
        self, asset: Asset, signer: tuple[str, str]
    ) -> None:
        with pytest.raises(VerificationError) as e:
            verify_bundle(
                asset(COSIGN_BUNDLE).read_bytes(),
                authority=keyless(asset, signer=signer),
                expected_digest=COSIGN_DIGEST,
            )
        assert e.value.code == "verify.identity_mismatch"

    def test_refused_under_the_staging_root(self, asset: Asset) -> None:
        with pytest.raises(VerificationError) as e:
            verify_bundle(
                asset(COSIGN_BUNDLE).read_bytes(),
                authority=keyless(asset, signer=COSIGN_SIGNER, root="staging.trusted_root.json"),
                expected_digest=COSIGN_DIGEST,
            )
        assert e.value.code == "verify.keyless_failed"

    def test_refused_by_a_key_authority(self, asset: Asset) -> None:
        with pytest.raises(VerificationError) as e:
            verify_bundle(
                asset(COSIGN_BUNDLE).read_bytes(),
                authority=key_authority(name="k", keys=[wire.public_pem(wire.new_key())]),
                expected_digest=COSIGN_DIGEST,
            )
        assert e.value.code == "verify.wrong_kind"


class TestSigstoreJsBundles:
    @pytest.mark.parametrize("name", ["bundleV03-dsse.sigstore", "bundleV02-dsse.sigstore"])
    def test_dsse_bundles_verify_over_their_sha512_subject(self, asset: Asset, name: str) -> None:
        verified = verify_bundle(
            asset(f"sigstore/sigstore-js/{name}").read_bytes(),
            authority=keyless(asset, signer=JS_SIGNER),
            expected_digest=JS_DIGEST,
        )
        assert (verified.subject, verified.issuer) == JS_SIGNER

    @pytest.mark.parametrize(
        "name",
        # v0.1 without an inclusion proof and an intoto/0.0.2 entry: sigstore-python refuses
        # both (PROVENANCE.md), so Sealgate does too.
        ["bundleV01-dsse-no-proof.sigstore", "bundleV03-intoto.sigstore"],
    )
    def test_negative_bundles_fail(self, asset: Asset, name: str) -> None:
        with pytest.raises(Error):
            verify_bundle(
                asset(f"sigstore/sigstore-js/{name}").read_bytes(),
                authority=keyless(asset, signer=JS_SIGNER),
                expected_digest=JS_DIGEST,
            )


@pytest.fixture
async def oci(registry: RegistryProcess) -> AsyncIterator[RegistryClient]:
    client = RegistryClient.from_settings(registry_settings(registry))
    yield client
    await client.aclose()


async def test_real_bundle_replayed_as_referrer_of_another_image_is_refused(
    asset: Asset, oci: RegistryClient, registry: RegistryProcess
) -> None:
    image, _ = await push_random_image(oci, f"{registry.host}/r{secrets.token_hex(4)}/app")
    assert image.digest is not None
    await wire.push_bundle(oci, image, asset(COSIGN_BUNDLE).read_bytes())

    (candidate,) = (await collect_evidence(oci, image)).candidates
    assert hasattr(candidate, "bundle")
    with pytest.raises(VerificationError) as e:
        verify_bundle(
            candidate.bundle,
            authority=keyless(asset, signer=COSIGN_SIGNER),
            expected_digest=image.digest,
        )
    assert e.value.code == "verify.digest_mismatch"
