"""The verify flow against a real registry: signatures made from the wire formats, pushed as
cosign v3 referrers and legacy ``.sig`` manifests, then verified or refused.
"""

from __future__ import annotations

import json
import secrets

import pytest

from app.db.session import session_scope
from app.enforce.verify import (
    verification_report_for_policy,
    verified_signatures_for_policy,
    verify_image,
)
from app.errors import NotFoundError, VerificationError
from app.oci.refs import ImageRef
from app.services import Services
from app.verify.model import SignatureFormat
from app.verify.trust import key_authority, save_authority
from tests.fixtures.images import push_random_image
from tests.fixtures.registry import RegistryProcess
from tests.verify import cosign_wire as wire


def repo(registry: RegistryProcess, name: str = "app") -> str:
    return f"{registry.host}/v{secrets.token_hex(5)}/{name}"


async def signed_image(
    services: Services, registry: RegistryProcess, key: wire.PrivateKey, *, legacy: bool = False
) -> ImageRef:
    return await wire.push_signed_image(services.registry, repo(registry), key, legacy=legacy)


class TestVerifyWithKey:
    async def test_bundle_referrer_verifies_by_tag(
        self, services: Services, registry: RegistryProcess
    ) -> None:
        key = wire.new_key()
        image = await signed_image(services, registry, key)

        report = await verify_image(
            services, image=f"{image.name}:{image.tag}", key_pem=wire.public_pem(key)
        )

        (signature,) = report.require_verified()
        assert report.digest == image.digest
        assert signature.format is SignatureFormat.bundle
        assert signature.digest == image.digest
        assert signature.key_id == wire.spki_sha256(key).hex()
        assert signature.signature_digest is not None

    async def test_legacy_signature_verifies(
        self, services: Services, registry: RegistryProcess
    ) -> None:
        key = wire.new_key("ed25519")
        image = await signed_image(services, registry, key, legacy=True)

        report = await verify_image(services, image=str(image), key_pem=wire.public_pem(key))

        (signature,) = report.require_verified()
        assert signature.format is SignatureFormat.legacy

    async def test_both_formats_are_reported(
        self, services: Services, registry: RegistryProcess
    ) -> None:
        key = wire.new_key()
        image = await signed_image(services, registry, key)
        assert image.digest is not None
        payload = wire.simple_signing(image.digest, image.name)
        await wire.push_legacy(services.registry, image, [wire.legacy_layer(key, payload)])

        report = await verify_image(services, image=str(image), key_pem=wire.public_pem(key))

        assert sorted(s.format.value for s in report.require_verified()) == ["bundle", "legacy"]

    async def test_unsigned_image_fails_with_a_clear_reason(
        self, services: Services, registry: RegistryProcess
    ) -> None:
        image, _ = await push_random_image(services.registry, repo(registry))

        report = await verify_image(
            services, image=str(image), key_pem=wire.public_pem(wire.new_key())
        )

        with pytest.raises(VerificationError, match="no signatures found") as e:
            report.require_verified()
        assert e.value.code == "verify.no_valid_signature"


class TestAdversarial:
    async def test_wrong_key_is_refused(
        self, services: Services, registry: RegistryProcess
    ) -> None:
        image = await signed_image(services, registry, wire.new_key())

        report = await verify_image(
            services, image=str(image), key_pem=wire.public_pem(wire.new_key())
        )

        assert not report.verified
        assert [r.code for r in report.rejections] == ["verify.bad_signature"]
        with pytest.raises(VerificationError, match="does not verify"):
            report.require_verified()

    async def test_bundle_replayed_onto_another_image_is_refused(
        self, services: Services, registry: RegistryProcess
    ) -> None:
        key = wire.new_key()
        signed = await signed_image(services, registry, key)
        assert signed.digest is not None
        victim, _ = await push_random_image(services.registry, repo(registry))
        # Copy the valid bundle of `signed` verbatim onto `victim`.
        bundle = wire.dsse_bundle(key, wire.statement(signed.digest, name=signed.name))
        await wire.push_bundle(services.registry, victim, bundle)

        report = await verify_image(services, image=str(victim), key_pem=wire.public_pem(key))

        assert not report.verified
        assert [r.code for r in report.rejections] == ["verify.digest_mismatch"]

    async def test_legacy_signature_replayed_onto_another_image_is_refused(
        self, services: Services, registry: RegistryProcess
    ) -> None:
        key = wire.new_key()
        signed, _ = await push_random_image(services.registry, repo(registry))
        victim, _ = await push_random_image(services.registry, repo(registry))
        assert signed.digest is not None
        payload = wire.simple_signing(signed.digest, signed.name)
        await wire.push_legacy(services.registry, victim, [wire.legacy_layer(key, payload)])

        report = await verify_image(services, image=str(victim), key_pem=wire.public_pem(key))

        assert [r.code for r in report.rejections] == ["verify.digest_mismatch"]

    async def test_tampered_legacy_payload_is_refused(
        self, services: Services, registry: RegistryProcess
    ) -> None:
        key = wire.new_key()
        image, _ = await push_random_image(services.registry, repo(registry))
        assert image.digest is not None
        signed = wire.simple_signing(image.digest, image.name)
        tampered = wire.simple_signing(image.digest, image.name, optional={"approved": "yes"})
        _, annotations = wire.legacy_layer(key, signed)
        await wire.push_legacy(services.registry, image, [(tampered, annotations)])

        report = await verify_image(services, image=str(image), key_pem=wire.public_pem(key))

        assert [r.code for r in report.rejections] == ["verify.bad_signature"]

    @pytest.mark.parametrize(
        "artifact_type",
        [wire.BUNDLE_MEDIA_TYPE, "application/vnd.dev.sigstore.bundle+json;version=0.3"],
    )
    async def test_dsse_referrer_with_bad_signature_is_refused(
        self, services: Services, registry: RegistryProcess, artifact_type: str
    ) -> None:
        # policy-controller PR #1971: an attestation referrer whose DSSE envelope names the
        # image but carries no valid signature must not count.
        key = wire.new_key()
        image, _ = await push_random_image(services.registry, repo(registry))
        assert image.digest is not None
        forged = wire.dsse_bundle(
            key, wire.statement(image.digest), signature=secrets.token_bytes(70)
        )
        await wire.push_bundle(services.registry, image, forged, artifact_type=artifact_type)

        report = await verify_image(services, image=str(image), key_pem=wire.public_pem(key))

        assert not report.verified
        assert [r.code for r in report.rejections] == ["verify.bad_signature"]

    async def test_bare_in_toto_referrer_never_counts(
        self, services: Services, registry: RegistryProcess
    ) -> None:
        # The exact shape of policy-controller PR #1971: artifactType in-toto, a DSSE
        # envelope naming the image, no valid signature. It is not even a candidate.
        key = wire.new_key()
        image, _ = await push_random_image(services.registry, repo(registry))
        assert image.digest is not None
        envelope = json.dumps(
            {
                "payloadType": wire.IN_TOTO,
                "payload": wire.b64(wire.statement(image.digest)),
                "signatures": [{"keyid": "", "sig": wire.b64(b"forged")}],
            }
        ).encode()
        await services.registry.push_referrer(
            image,
            artifact_type=wire.IN_TOTO,
            layers=[(envelope, "application/vnd.dsse.envelope.v1+json", {})],
            annotations={},
        )

        report = await verify_image(services, image=str(image), key_pem=wire.public_pem(key))

        assert report.signatures == () and report.rejections == ()
        with pytest.raises(VerificationError, match="no signatures found"):
            report.require_verified()

    async def test_malformed_bundle_referrer_is_refused_and_others_still_verify(
        self, services: Services, registry: RegistryProcess
    ) -> None:
        key = wire.new_key()
        image = await signed_image(services, registry, key)
        await wire.push_bundle(services.registry, image, b'{"mediaType": 1')

        report = await verify_image(services, image=str(image), key_pem=wire.public_pem(key))

        assert len(report.require_verified()) == 1
        assert [r.code for r in report.rejections] == ["evidence.malformed_bundle"]

    async def test_oversized_bundle_is_not_downloaded(
        self, services: Services, registry: RegistryProcess
    ) -> None:
        key = wire.new_key()
        image = await signed_image(services, registry, key)
        huge = json.dumps({"mediaType": wire.BUNDLE_MEDIA_TYPE, "pad": "x" * (2 << 20)})
        await wire.push_bundle(services.registry, image, huge.encode())

        report = await verify_image(services, image=str(image), key_pem=wire.public_pem(key))

        assert len(report.require_verified()) == 1
        assert [r.code for r in report.rejections] == ["evidence.too_large"]


class TestAuthorities:
    async def test_named_authority_verifies_within_its_scope_only(
        self, services: Services, registry: RegistryProcess
    ) -> None:
        key = wire.new_key()
        image = await signed_image(services, registry, key)
        other = await signed_image(services, registry, key)
        with session_scope(services.sessions) as session:
            save_authority(
                session,
                key_authority(name="team", keys=[wire.public_pem(key)], scopes=[image.name]),
            )

        report = await verify_image(services, image=str(image), authority="team")
        assert report.require_verified()[0].authority == "team"

        with pytest.raises(VerificationError) as e:
            await verify_image(services, image=str(other), authority="team")
        assert e.value.code == "verify.out_of_scope"

        with pytest.raises(NotFoundError):
            await verify_image(services, image=str(image), authority="nobody")

    async def test_policy_sees_signatures_of_every_matching_authority(
        self, services: Services, registry: RegistryProcess
    ) -> None:
        team_key, ops_key, stranger = wire.new_key(), wire.new_key("rsa-3072"), wire.new_key()
        image = await signed_image(services, registry, team_key)
        payload = wire.simple_signing(str(image.digest), image.name)
        await wire.push_legacy(
            services.registry,
            image,
            [wire.legacy_layer(ops_key, payload), wire.legacy_layer(stranger, payload)],
        )
        with session_scope(services.sessions) as session:
            save_authority(
                session, key_authority(name="team", keys=[wire.public_pem(team_key)], scopes=["**"])
            )
            save_authority(
                session, key_authority(name="ops", keys=[wire.public_pem(ops_key)], scopes=["**"])
            )
            save_authority(
                session,
                key_authority(
                    name="elsewhere", keys=[wire.public_pem(stranger)], scopes=["ghcr.io/x/*"]
                ),
            )

        signatures = await verified_signatures_for_policy(services, str(image))

        assert sorted((s.authority, s.format.value) for s in signatures) == [
            ("ops", "legacy"),
            ("team", "bundle"),
        ]
        report = await verification_report_for_policy(services, str(image))
        refused = {r.authority for r in report.rejections}
        assert refused == {"team", "ops"}  # the stranger's layer, tried by both in-scope ones

    async def test_no_matching_authority_means_nothing_verifies(
        self, services: Services, registry: RegistryProcess
    ) -> None:
        image = await signed_image(services, registry, wire.new_key())

        report = await verification_report_for_policy(services, str(image))

        assert report.signatures == ()
        assert [r.code for r in report.rejections] == ["verify.no_authority"]
