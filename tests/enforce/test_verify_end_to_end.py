"""End to end: images signed by Sealgate's own sign flow (stored keys, and keylessly through
the local Sigstore instance) verify through the verify flow; wrong identities are refused.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from typing import Any

import pytest

from app.auth.scopes import Scope
from app.auth.tokens import Principal
from app.config import Settings
from app.db.session import session_scope
from app.enforce.sign import SignFormat, sign_image
from app.enforce.verify import verified_signatures_for_policy, verify_image
from app.errors import VerificationError
from app.oci.refs import ImageRef
from app.services import Services
from app.signing.keys import generate_key, get_key
from app.signing.signers import Algorithm
from app.verify.keyless_identity import parse_identity
from app.verify.model import SignatureFormat, SignatureKind
from app.verify.trust import keyless_authority, save_authority
from app.verify.trusted_root import TrustedRootRef
from tests.fixtures.images import push_random_image
from tests.fixtures.registry import RegistryProcess
from tests.fixtures.sigstore import DEFAULT_ISSUER, SigstoreInstance
from tests.verify import cosign_wire as wire

ADMIN = Principal(name="test", scopes=(Scope.parse("admin"),))
SUBJECT = "ci@example.com"


@pytest.fixture
async def services(
    settings: Settings, clean_database: Any, sigstore_instance: SigstoreInstance
) -> AsyncIterator[Services]:
    """Services signing keylessly through the local Sigstore instance."""
    local = settings.model_copy(
        update={"sigstore_trust_config": str(sigstore_instance.trust_config_path)}
    )
    svc = Services.from_settings(local)
    yield svc
    await svc.aclose()


async def new_image(services: Services, registry: RegistryProcess) -> ImageRef:
    image, _ = await push_random_image(
        services.registry, f"{registry.host}/e2e{secrets.token_hex(4)}/app"
    )
    return image


async def keyless_signed_image(
    services: Services, registry: RegistryProcess, instance: SigstoreInstance
) -> ImageRef:
    """A fresh image signed by Sealgate's sign flow as SUBJECT through the local Sigstore."""
    image = await new_image(services, registry)
    await sign_image(
        services,
        image=str(image),
        principal=ADMIN,
        identity_token=instance.mint_identity_token(SUBJECT),
    )
    return image


def local_root(instance: SigstoreInstance) -> TrustedRootRef:
    return TrustedRootRef.resolve(str(instance.trusted_root_path))


class TestKeySigned:
    async def test_sealgate_key_signatures_verify_in_both_formats(
        self, services: Services, registry: RegistryProcess
    ) -> None:
        with session_scope(services.sessions) as session:
            generate_key(
                session,
                settings=services.settings,
                name="ci",
                algorithm=Algorithm.ecdsa_p256,
                scopes=["**"],
            )
        image = await new_image(services, registry)
        signed = await sign_image(
            services,
            image=str(image),
            principal=ADMIN,
            key_name="ci",
            formats=(SignFormat.bundle, SignFormat.legacy),
            annotations={"build": "7"},
        )
        with session_scope(services.sessions) as session:
            public = get_key(session, name="ci").public_key_pem

        report = await verify_image(services, image=f"{image.name}:v1", key_pem=public)

        signatures = report.require_verified()
        assert sorted(s.format.value for s in signatures) == ["bundle", "legacy"]
        assert {s.key_id for s in signatures} == {signed.key_id}
        assert all(s.annotations == {"build": "7"} for s in signatures)
        written = {(m.format.value, m.signature_digest) for m in signed.signatures}
        assert {(s.format.value, s.signature_digest) for s in signatures} == written

        other = await verify_image(
            services, image=str(image), key_pem=wire.public_pem(wire.new_key())
        )
        assert not other.verified


class TestKeyless:
    async def test_keyless_bundle_verifies_with_identity_and_local_root(
        self, services: Services, registry: RegistryProcess, sigstore_instance: SigstoreInstance
    ) -> None:
        image = await keyless_signed_image(services, registry, sigstore_instance)

        report = await verify_image(
            services,
            image=str(image),
            identity=parse_identity(subject=SUBJECT, issuer=DEFAULT_ISSUER),
            trusted_root=local_root(sigstore_instance),
        )

        (signature,) = report.require_verified()
        assert signature.kind is SignatureKind.keyless
        assert signature.format is SignatureFormat.bundle
        assert (signature.subject, signature.issuer) == (SUBJECT, DEFAULT_ISSUER)
        assert signature.tlog is True and signature.signed_at is not None

    @pytest.mark.parametrize(
        ("subject", "issuer"),
        [("attacker@example.com", DEFAULT_ISSUER), (SUBJECT, "https://accounts.example.org")],
        ids=["wrong-identity", "wrong-issuer"],
    )
    async def test_wrong_identity_or_issuer_is_refused(
        self,
        services: Services,
        registry: RegistryProcess,
        sigstore_instance: SigstoreInstance,
        subject: str,
        issuer: str,
    ) -> None:
        image = await keyless_signed_image(services, registry, sigstore_instance)

        report = await verify_image(
            services,
            image=str(image),
            identity=parse_identity(subject=subject, issuer=issuer),
            trusted_root=local_root(sigstore_instance),
        )

        assert [r.code for r in report.rejections] == ["verify.identity_mismatch"]
        with pytest.raises(VerificationError):
            report.require_verified()

    async def test_public_good_root_does_not_trust_the_local_instance(
        self, services: Services, registry: RegistryProcess, sigstore_instance: SigstoreInstance
    ) -> None:
        image = await keyless_signed_image(services, registry, sigstore_instance)

        report = await verify_image(
            services,
            image=str(image),
            identity=parse_identity(subject=SUBJECT, issuer=DEFAULT_ISSUER),
        )

        assert not report.verified
        assert [r.code for r in report.rejections] == ["verify.keyless_failed"]

    async def test_policy_sees_keyless_signature_through_a_stored_authority(
        self, services: Services, registry: RegistryProcess, sigstore_instance: SigstoreInstance
    ) -> None:
        image = await keyless_signed_image(services, registry, sigstore_instance)
        with session_scope(services.sessions) as session:
            save_authority(
                session,
                keyless_authority(
                    name="ci",
                    identity=parse_identity(
                        subject_regexp=r"ci@example\.com", issuer=DEFAULT_ISSUER
                    ),
                    trusted_root=local_root(sigstore_instance),
                    scopes=[f"{registry.host}/**"],
                ),
            )

        (signature,) = await verified_signatures_for_policy(services, str(image))

        assert signature.authority == "ci" and signature.subject == SUBJECT

    async def test_legacy_keyless_signature_verifies_through_the_flow(
        self, services: Services, registry: RegistryProcess, sigstore_instance: SigstoreInstance
    ) -> None:
        from tests.verify.test_keyless_legacy import sign_legacy_layers

        image = await new_image(services, registry)
        assert image.digest is not None
        (layer,) = sign_legacy_layers(
            sigstore_instance, [wire.simple_signing(image.digest, image.name)]
        )
        annotations = {
            "dev.cosignproject.cosign/signature": layer.signature_b64,
            "dev.sigstore.cosign/certificate": layer.certificate_pem,
            "dev.sigstore.cosign/chain": layer.chain_pem or "",
            "dev.sigstore.cosign/bundle": layer.bundle_annotation,
        }
        await wire.push_legacy(services.registry, image, [(layer.payload, annotations)])

        report = await verify_image(
            services,
            image=str(image),
            identity=parse_identity(subject=SUBJECT, issuer=DEFAULT_ISSUER),
            trusted_root=local_root(sigstore_instance),
        )

        (signature,) = report.require_verified()
        assert signature.format is SignatureFormat.legacy
        assert signature.kind is SignatureKind.keyless
        assert signature.signed_at is not None
