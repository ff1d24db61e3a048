"""Keyless signing through the sign flow, against the local Sigstore instance and registry."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from app.auth.scopes import Scope
from app.auth.tokens import Principal
from app.config import Settings, load_settings
from app.enforce.sign import parse_formats, sign_image, signature_records
from app.enforce.verify import verify_image
from app.errors import ForbiddenError, SigningError
from app.oci import media
from app.services import Services
from app.verify.keyless_identity import KeylessIdentity
from app.verify.trusted_root import TrustedRootRef
from tests.fixtures.images import push_random_image
from tests.fixtures.sigstore import DEFAULT_ISSUER, SigstoreInstance

ADMIN = Principal(name="ci", scopes=(Scope.parse("admin"),))


@pytest.fixture
async def services(
    settings: Settings, sigstore_instance: SigstoreInstance, clean_database: Any
) -> AsyncIterator[Services]:
    keyless_settings = load_settings(
        **settings.model_dump(exclude={"sigstore_trust_config"}),
        sigstore_trust_config=str(sigstore_instance.trust_config_path),
    )
    svc = Services.from_settings(keyless_settings)
    yield svc
    await svc.aclose()


async def test_keyless_bundle_is_published_recorded_and_verified_by_sigstore_js(
    services: Services,
    sigstore_instance: SigstoreInstance,
    unique_repo: Callable[[str], str],
    tmp_path: Path,
) -> None:
    image, _ = await push_random_image(services.registry, unique_repo("app"))
    token = sigstore_instance.mint_identity_token("release@ci.example")
    result = await sign_image(services, image=str(image), principal=ADMIN, identity_token=token)
    assert result.identity == "release@ci.example"
    assert result.issuer == DEFAULT_ISSUER
    (signed,) = result.signatures
    referrers = await services.registry.list_referrers(image)
    assert [r.digest for r in referrers] == [signed.signature_digest]
    assert referrers[0].artifact_type == media.SIGSTORE_BUNDLE_V03
    referrer = await services.registry.get_manifest(image.with_digest(signed.signature_digest))
    bundle = await services.registry.get_blob(image, referrer.layers[0].digest)
    (tmp_path / "bundle.json").write_bytes(bundle)
    verified = sigstore_instance.verify_with_sigstore_js(
        tmp_path / "bundle.json", identity="release@ci.example", issuer=DEFAULT_ISSUER
    )
    assert verified.ok, verified.output
    (record,) = signature_records(services, image=image.name)
    assert record.identity == "release@ci.example"
    assert record.key_name is None


async def test_out_of_scope_keyless_writes_nothing(
    services: Services,
    sigstore_instance: SigstoreInstance,
    unique_repo: Callable[[str], str],
) -> None:
    image, _ = await push_random_image(services.registry, unique_repo("app"))
    other = Principal(name="ci", scopes=(Scope.parse("sign:elsewhere/**"),))
    token = sigstore_instance.mint_identity_token("release@ci.example")
    with pytest.raises(ForbiddenError):
        await sign_image(services, image=str(image), principal=other, identity_token=token)
    assert await services.registry.list_referrers(image) == []


async def test_malformed_identity_token_is_refused_before_writing(
    services: Services, unique_repo: Callable[[str], str]
) -> None:
    image, _ = await push_random_image(services.registry, unique_repo("app"))
    with pytest.raises(SigningError):
        await sign_image(services, image=str(image), principal=ADMIN, identity_token="not-a-jwt")
    assert await services.registry.list_referrers(image) == []


async def test_keyless_both_formats_pass_the_verify_flow(
    services: Services,
    sigstore_instance: SigstoreInstance,
    unique_repo: Callable[[str], str],
) -> None:
    image, _ = await push_random_image(services.registry, unique_repo("app"))
    token = sigstore_instance.mint_identity_token("release@ci.example")
    result = await sign_image(
        services,
        image=str(image),
        principal=ADMIN,
        identity_token=token,
        formats=parse_formats("both"),
    )
    assert [s.format.value for s in result.signatures] == ["bundle", "legacy"]
    tag = "sha256-" + (image.digest or "").split(":")[1] + ".sig"
    (layer,) = (await services.registry.get_manifest(image.with_tag(tag))).layers
    assert set(layer.annotations) == {
        "dev.cosignproject.cosign/signature",
        "dev.sigstore.cosign/certificate",
        "dev.sigstore.cosign/chain",
        "dev.sigstore.cosign/bundle",
    }
    root = TrustedRootRef.from_text(sigstore_instance.trusted_root_path.read_text())
    report = await verify_image(
        services,
        image=str(image),
        identity=KeylessIdentity(subject="release@ci.example", issuer=DEFAULT_ISSUER),
        trusted_root=root,
    )
    assert sorted(s.format.value for s in report.signatures) == ["bundle", "legacy"], report
    assert {s.subject for s in report.signatures} == {"release@ci.example"}
    wrong = await verify_image(
        services,
        image=str(image),
        identity=KeylessIdentity(subject="someone@else.example", issuer=DEFAULT_ISSUER),
        trusted_root=root,
    )
    assert wrong.signatures == ()
