"""The sign flow against the real registry and database: formats, scope, records, refusals."""

from __future__ import annotations

import base64
import json
import logging
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import select

from app.auth.scopes import Scope
from app.auth.tokens import Principal
from app.db.models import SignatureRecord
from app.db.session import session_scope
from app.enforce.sign import (
    SignFormat,
    parse_annotations,
    parse_formats,
    sign_image,
    signature_records,
)
from app.errors import ForbiddenError, InputError, NotFoundError, RegistryError, SigningError
from app.oci import media
from app.oci.refs import ImageRef
from app.services import Services
from app.signing.keys import disable_key, generate_key, load_signer
from app.signing.signers import Algorithm
from tests.fixtures.images import push_multiplatform_index, push_random_image
from tests.signing.sigstore_js import verify_key_bundle

pytestmark = pytest.mark.usefixtures("unique_repo")

ADMIN = Principal(name="local-admin", scopes=(Scope.parse("admin"),))


def _key(services: Services, name: str = "ci", algorithm: Algorithm = Algorithm.ecdsa_p256) -> str:
    with session_scope(services.sessions) as session:
        return generate_key(
            session, settings=services.settings, name=name, algorithm=algorithm, scopes=["**"]
        ).public_key_pem


async def _bundle_layer(services: Services, image: ImageRef, signature_digest: str) -> bytes:
    referrer = await services.registry.get_manifest(image.with_digest(signature_digest))
    layers = referrer.layers
    assert len(layers) == 1
    return await services.registry.get_blob(image, layers[0].digest)


@pytest.fixture
def new_repo(unique_repo: Callable[[str], str]) -> Callable[[], str]:
    return lambda: unique_repo("app")


class TestBundle:
    async def test_sign_writes_a_cosign_v3_referrer_that_sigstore_js_verifies(
        self, services: Services, new_repo: Callable[[], str], tmp_path: Path
    ) -> None:
        public_pem = _key(services)
        image, _ = await push_random_image(services.registry, new_repo())
        result = await sign_image(
            services,
            image=f"{image.name}:v1",
            principal=ADMIN,
            key_name="ci",
            annotations={"env": "prod"},
        )
        assert result.digest == image.digest
        assert result.formats == (SignFormat.bundle,)
        (signed,) = result.signatures
        referrers = await services.registry.list_referrers(image)
        assert [r.digest for r in referrers] == [signed.signature_digest]
        assert referrers[0].artifact_type == media.SIGSTORE_BUNDLE_V03
        referrer = await services.registry.get_manifest(image.with_digest(signed.signature_digest))
        assert referrer.json["config"]["mediaType"] == media.OCI_EMPTY
        assert referrer.json["subject"]["digest"] == image.digest
        assert referrer.json["annotations"]["dev.sigstore.bundle.content"] == "dsse-envelope"
        assert (
            referrer.json["annotations"]["dev.sigstore.bundle.predicateType"]
            == "https://sigstore.dev/cosign/sign/v1"
        )
        assert referrer.layers[0].media_type == media.SIGSTORE_BUNDLE_V03
        bundle = await _bundle_layer(services, image, signed.signature_digest)
        statement = json.loads(base64.b64decode(json.loads(bundle)["dsseEnvelope"]["payload"]))
        assert statement["subject"][0]["digest"] == {"sha256": image.digest.split(":")[1]}
        assert statement["subject"][0]["annotations"] == {"env": "prod"}
        # Independent verifier: npm @sigstore/verify (tests/sigstore_local/verify.js).
        assert verify_key_bundle(bundle, public_pem=public_pem, workdir=tmp_path)["ok"] is True

    async def test_record_names_who_what_and_where(
        self, services: Services, new_repo: Callable[[], str]
    ) -> None:
        _key(services)
        image, _ = await push_random_image(services.registry, new_repo())
        principal = Principal(name="ci-token", scopes=(Scope.parse(f"sign:{image.name}"),))
        result = await sign_image(services, image=str(image), principal=principal, key_name="ci")
        records = signature_records(services, image=image.name)
        assert len(records) == 1
        record = records[0]
        assert record.signed_by == "ci-token"
        assert record.digest == image.digest
        assert record.key_name == "ci"
        assert record.formats == ["bundle"]
        assert record.signature_digests == [result.signatures[0].signature_digest]
        assert signature_records(services, image=f"{image.name}@sha256:{'0' * 64}") == []

    async def test_recursive_signs_the_index_and_every_platform(
        self, services: Services, new_repo: Callable[[], str]
    ) -> None:
        _key(services)
        index_ref, index = await push_multiplatform_index(services.registry, new_repo())
        children = [d.digest for d in index.manifests]
        result = await sign_image(
            services, image=str(index_ref), principal=ADMIN, key_name="ci", recursive=True
        )
        assert result.digests == (index_ref.digest, *children)
        for digest in result.digests:
            referrers = await services.registry.list_referrers(index_ref.with_digest(digest))
            assert len(referrers) == 1
        unsigned = await sign_image(services, image=str(index_ref), principal=ADMIN, key_name="ci")
        assert unsigned.digests == (index_ref.digest,)


class TestLegacy:
    async def test_legacy_layer_is_appended_once_per_key_and_openssl_verifies_it(
        self, services: Services, new_repo: Callable[[], str], tmp_path: Path
    ) -> None:
        public_pem = _key(services, "one")
        _key(services, "two")
        image, _ = await push_random_image(services.registry, new_repo())
        first = await sign_image(
            services,
            image=str(image),
            principal=ADMIN,
            key_name="one",
            formats=(SignFormat.legacy,),
        )
        again = await sign_image(
            services,
            image=str(image),
            principal=ADMIN,
            key_name="one",
            formats=(SignFormat.legacy,),
        )
        assert again.signatures[0].signature_digest == first.signatures[0].signature_digest
        second = await sign_image(
            services,
            image=str(image),
            principal=ADMIN,
            key_name="two",
            formats=(SignFormat.legacy,),
        )
        tag = "sha256-" + image.digest.split(":")[1] + ".sig"  # type: ignore[union-attr]
        sig_manifest = await services.registry.get_manifest(image.with_tag(tag))
        assert sig_manifest.digest == second.signatures[0].signature_digest
        layers = sig_manifest.layers
        assert len(layers) == 2
        assert {layer.media_type for layer in layers} == {media.COSIGN_SIMPLESIGNING}
        payload = await services.registry.get_blob(image, layers[0].digest)
        doc = json.loads(payload)
        assert doc["critical"]["image"]["docker-manifest-digest"] == image.digest
        assert doc["critical"]["identity"]["docker-reference"] == image.name
        assert doc["critical"]["type"] == "cosign container image signature"
        # Independent verifier: openssl over the payload blob, as cosign's spec describes.
        signature = base64.b64decode(layers[0].annotations["dev.cosignproject.cosign/signature"])
        (tmp_path / "payload").write_bytes(payload)
        (tmp_path / "sig").write_bytes(signature)
        (tmp_path / "key.pem").write_text(public_pem)
        run = subprocess.run(
            ["openssl", "dgst", "-sha256", "-verify", "key.pem", "-signature", "sig", "payload"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
        )
        assert run.returncode == 0, run.stderr

    async def test_both_formats(self, services: Services, new_repo: Callable[[], str]) -> None:
        _key(services)
        image, _ = await push_random_image(services.registry, new_repo())
        result = await sign_image(
            services,
            image=str(image),
            principal=ADMIN,
            key_name="ci",
            formats=parse_formats("both"),
        )
        assert [s.format for s in result.signatures] == [SignFormat.bundle, SignFormat.legacy]
        with session_scope(services.sessions) as session:
            row = session.scalar(select(SignatureRecord))
            assert row is not None
            assert row.formats == ["bundle", "legacy"]


class TestRefusals:
    async def _nothing_written(self, services: Services, image: ImageRef) -> None:
        assert await services.registry.list_referrers(image) == []
        tag = "sha256-" + image.digest.split(":")[1] + ".sig"  # type: ignore[union-attr]
        with pytest.raises(RegistryError):
            await services.registry.get_manifest(image.with_tag(tag))
        assert signature_records(services, image=image.name) == []

    async def test_token_scoped_to_another_repository_writes_nothing(
        self, services: Services, new_repo: Callable[[], str]
    ) -> None:
        _key(services)
        image, _ = await push_random_image(services.registry, new_repo())
        other = Principal(name="ci", scopes=(Scope.parse(f"sign:{image.registry}/other/*"),))
        with pytest.raises(ForbiddenError):
            await sign_image(
                services,
                image=str(image),
                principal=other,
                key_name="ci",
                formats=parse_formats("both"),
            )
        await self._nothing_written(services, image)

    async def test_verify_scope_does_not_allow_signing(
        self, services: Services, new_repo: Callable[[], str]
    ) -> None:
        _key(services)
        image, _ = await push_random_image(services.registry, new_repo())
        verifier = Principal(name="v", scopes=(Scope.parse("verify:**"),))
        with pytest.raises(ForbiddenError):
            await sign_image(services, image=str(image), principal=verifier, key_name="ci")
        await self._nothing_written(services, image)

    async def test_disabled_key_writes_nothing(
        self, services: Services, new_repo: Callable[[], str]
    ) -> None:
        _key(services)
        with session_scope(services.sessions) as session:
            disable_key(session, name="ci")
        image, _ = await push_random_image(services.registry, new_repo())
        with pytest.raises(SigningError):
            await sign_image(services, image=str(image), principal=ADMIN, key_name="ci")
        await self._nothing_written(services, image)

    async def test_unknown_key(self, services: Services, new_repo: Callable[[], str]) -> None:
        image, _ = await push_random_image(services.registry, new_repo())
        with pytest.raises(NotFoundError):
            await sign_image(services, image=str(image), principal=ADMIN, key_name="nope")
        await self._nothing_written(services, image)

    @pytest.mark.parametrize("image", ["", "foo::bar", "x/UPPER", "a@sha256:12"])
    async def test_bad_reference(self, services: Services, image: str) -> None:
        with pytest.raises(InputError):
            await sign_image(services, image=image, principal=ADMIN, key_name="ci")

    async def test_key_and_token_are_exclusive(self, services: Services) -> None:
        with pytest.raises(InputError, match="exactly one"):
            await sign_image(services, image="r.io/a/b:v1", principal=ADMIN)
        with pytest.raises(InputError, match="exactly one"):
            await sign_image(
                services, image="r.io/a/b:v1", principal=ADMIN, key_name="k", identity_token="t"
            )

    async def test_missing_image(self, services: Services, new_repo: Callable[[], str]) -> None:
        _key(services)
        with pytest.raises(RegistryError) as e:
            await sign_image(services, image=f"{new_repo()}:nope", principal=ADMIN, key_name="ci")
        assert e.value.code == "registry.not_found"


def test_parse_annotations_and_formats() -> None:
    assert parse_annotations(["a=b", "c=d=e", "empty="]) == {"a": "b", "c": "d=e", "empty": ""}
    with pytest.raises(InputError):
        parse_annotations(["novalue"])
    with pytest.raises(InputError):
        parse_formats("pdf")


class TestHostileSignatureTag:
    async def test_a_sig_tag_that_is_not_a_signature_manifest_is_not_overwritten(
        self, services: Services, new_repo: Callable[[], str]
    ) -> None:
        _key(services)
        image, _ = await push_random_image(services.registry, new_repo())
        tag = "sha256-" + (image.digest or "").split(":")[1] + ".sig"
        index = {"schemaVersion": 2, "mediaType": media.OCI_INDEX, "manifests": []}
        squatter = await services.registry.push_manifest(
            image, index, media_type=media.OCI_INDEX, tag=tag
        )
        with pytest.raises(RegistryError) as e:
            await sign_image(
                services,
                image=str(image),
                principal=ADMIN,
                key_name="ci",
                formats=(SignFormat.legacy,),
            )
        assert e.value.code == "registry.invalid_manifest"
        assert await services.registry.resolve_digest(image.with_tag(tag)) == squatter.digest
        assert signature_records(services, image=image.name) == []


async def test_signing_logs_and_records_hold_no_private_key(
    services: Services, new_repo: Callable[[], str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    _key(services)
    image, _ = await push_random_image(services.registry, new_repo())
    result = await sign_image(
        services, image=str(image), principal=ADMIN, key_name="ci", formats=parse_formats("both")
    )
    with session_scope(services.sessions) as session:
        signer = load_signer(
            session, settings=services.settings, name="ci", image_name="ghcr.io/acme/app"
        )
        records = [
            json.dumps({c.name: str(getattr(r, c.name)) for c in SignatureRecord.__table__.columns})
            for r in session.scalars(select(SignatureRecord))
        ]
    private = signer.private_key
    assert isinstance(private, ec.EllipticCurvePrivateKey)
    scalar = private.private_numbers().private_value
    pem_body = "".join(
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode()
        .splitlines()[1:-1]
    )
    everything = caplog.text + "".join(records) + result.model_dump_json()
    for secret in (str(scalar), scalar.to_bytes(32, "big").hex(), pem_body[:64], pem_body[-64:]):
        assert secret not in everything
