"""After the copy: an image signed with a stored key and keylessly (local Sigstore) is copied,
or exported and imported, to a second real registry; the source registry is stopped; then
``verify`` and an admission decision against the site registry pass with the same authorities
once they carry the identity remap the transfer printed (refused without it), and the keyless
signature verifies offline against the trusted root file alone."""

from __future__ import annotations

import contextlib
import shutil
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from app.auth.scopes import Scope
from app.auth.tokens import Principal
from app.config import Settings
from app.db.session import session_scope
from app.enforce.deadline import Deadline
from app.enforce.outcome import DecisionRequest
from app.enforce.pipeline import decide
from app.enforce.sign import SignFormat, sign_image
from app.enforce.verify import verify_image
from app.errors import NotFoundError
from app.oci.refs import ImageRef
from app.policy.input import Entrypoint
from app.services import Services
from app.signing.keys import generate_key, get_key
from app.signing.signers import Algorithm
from app.transfer.copy import copy_image
from app.transfer.export import export_images
from app.transfer.naming import SiteTarget
from app.transfer.site_import import import_layout
from app.verify.identity import SignedIdentityRule
from app.verify.keyless_identity import parse_identity
from app.verify.model import SignatureKind
from app.verify.trust import (
    TrustAuthority,
    key_authority,
    keyless_authority,
    remove_authority,
    save_authority,
)
from app.verify.trusted_root import TrustedRootRef
from tests.fixtures.images import push_random_image
from tests.fixtures.registry import RegistryProcess, start_registry, stop_registry
from tests.fixtures.sigstore import DEFAULT_ISSUER, SigstoreInstance

ADMIN = Principal(name="test", scopes=(Scope.parse("admin"),))
SUBJECT = "ci@example.com"


@pytest.fixture
def source_registry(tmp_path: Path) -> Iterator[RegistryProcess]:
    """A registry of its own for the source, so that the test can stop it."""
    reg = start_registry(tmp_path / "source-registry")
    yield reg
    if reg.process.poll() is None:
        stop_registry(reg)


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


def authorities(
    services: Services, *, public_key: str, root: Path, scopes: list[str], remap: str | None
) -> None:
    """(Re)store the two authorities: key ``ci`` and keyless ``ci-keyless``."""
    rule = SignedIdentityRule.parse(None, [remap] if remap else [])
    wanted: list[TrustAuthority] = [
        key_authority(name="ci", keys=[public_key], scopes=scopes, signed_identity=rule),
        keyless_authority(
            name="ci-keyless",
            identity=parse_identity(subject=SUBJECT, issuer=DEFAULT_ISSUER),
            trusted_root=TrustedRootRef.resolve(str(root)),
            scopes=scopes,
            signed_identity=rule,
        ),
    ]
    with session_scope(services.sessions) as session:
        for authority in wanted:
            with contextlib.suppress(NotFoundError):  # not stored yet
                remove_authority(session, authority.name)
            save_authority(session, authority)


def sigstore_port(instance: SigstoreInstance) -> int:
    return int(instance.url.rstrip("/").rsplit(":", 1)[1])


def refuse_connections(monkeypatch: pytest.MonkeyPatch, port: int) -> list[object]:
    """Refuse every connection to ``port`` (the Sigstore instance, out of reach at the
    site) and record the attempts."""
    attempts: list[object] = []
    original = socket.socket.connect

    def guarded(self: socket.socket, address: Any) -> Any:
        if isinstance(address, tuple) and len(address) >= 2 and address[1] == port:
            attempts.append(address)
            raise ConnectionRefusedError("the Sigstore instance is out of reach at the site")
        return original(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)
    return attempts


@pytest.mark.parametrize("transfer", ["copy", "export-import"])
async def test_the_copy_verifies_with_the_same_authorities_once_remapped(
    services: Services,
    source_registry: RegistryProcess,
    registry: RegistryProcess,
    sigstore_instance: SigstoreInstance,
    tmp_path: Path,
    transfer: str,
) -> None:
    client = services.registry
    # At the source: an image signed with a stored key (bundle and legacy) and keylessly.
    image, _ = await push_random_image(client, f"{source_registry.host}/team/app")
    with session_scope(services.sessions) as session:
        generate_key(
            session,
            settings=services.settings,
            name="ci",
            algorithm=Algorithm.ecdsa_p256,
            scopes=["**"],
        )
        public = get_key(session, name="ci").public_key_pem
    await sign_image(
        services,
        image=str(image),
        principal=ADMIN,
        key_name="ci",
        formats=(SignFormat.bundle, SignFormat.legacy),
    )
    await sign_image(
        services,
        image=str(image),
        principal=ADMIN,
        identity_token=sigstore_instance.mint_identity_token(SUBJECT),
    )
    # To the site (the suite's registry plays it), under another name.
    site = registry
    if transfer == "copy":
        destination = ImageRef.parse(f"{site.host}/plant{tmp_path.name[-6:]}/team/app:v1")
        report = await copy_image(client, source=image.with_tag("v1"), destination=destination)
        remaps = [report.remap_identity]
    else:
        archive = tmp_path / "site.tar"
        await export_images(client, images=[image.with_tag("v1")], output=archive)
        target = SiteTarget.parse(f"{site.host}/plant{tmp_path.name[-6:]}")
        imported = await import_layout(
            client, layout=archive, target=target, max_manifest_bytes=4 * 1024 * 1024
        )
        destination = target.place(image.with_tag("v1"))
        remaps = imported.remap_identity
    (remap,) = remaps
    assert remap == f"{destination.name.removesuffix('/team/app')}={source_registry.host}"
    stop_registry(source_registry)
    # The site has its own copy of the trusted root file.
    root = tmp_path / "site-trust" / "trusted_root.json"
    root.parent.mkdir()
    shutil.copy(sigstore_instance.trusted_root_path, root)
    scopes = [f"{source_registry.host}/**", f"{site.host}/**"]

    # Without the remap: the signatures name the source repository, and are refused.
    authorities(services, public_key=public, root=root, scopes=scopes, remap=None)
    refused = await verify_image(services, image=str(destination), authority="ci")
    assert not refused.verified
    assert "verify.identity_mismatch" in {r.code for r in refused.rejections}
    refused_keyless = await verify_image(services, image=str(destination), authority="ci-keyless")
    assert not refused_keyless.verified
    assert "verify.identity_mismatch" in {r.code for r in refused_keyless.rejections}
    denied = await decide(
        DecisionRequest(
            image=str(destination), entrypoint=Entrypoint.admission, deadline=Deadline(10)
        ),
        services.decisions,
    )
    assert not denied.allowed
    assert any(c.startswith("signature.") for c in denied.codes), denied.codes

    # With the remap the transfer printed: verified, and admitted.
    authorities(services, public_key=public, root=root, scopes=scopes, remap=remap)
    by_key = await verify_image(services, image=str(destination), authority="ci")
    assert sorted(s.format.value for s in by_key.require_verified()) == ["bundle", "legacy"]
    keyless = await verify_image(services, image=str(destination), authority="ci-keyless")
    assert [s.kind for s in keyless.require_verified()] == [SignatureKind.keyless]
    fresh = Services.from_settings(services.settings)
    try:
        admitted = await decide(
            DecisionRequest(
                image=str(destination), entrypoint=Entrypoint.admission, deadline=Deadline(10)
            ),
            fresh.decisions,
        )
    finally:
        await fresh.aclose()
    assert admitted.allowed, admitted.decision
    assert admitted.digest == image.digest


async def test_keyless_signature_of_the_copy_verifies_offline_against_the_root_file(
    services: Services,
    source_registry: RegistryProcess,
    registry: RegistryProcess,
    sigstore_instance: SigstoreInstance,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client = services.registry
    image, _ = await push_random_image(client, f"{source_registry.host}/team/app")
    await sign_image(
        services,
        image=str(image),
        principal=ADMIN,
        identity_token=sigstore_instance.mint_identity_token(SUBJECT),
    )
    destination = ImageRef.parse(f"{registry.host}/offline{tmp_path.name[-6:]}/team/app:v1")
    report = await copy_image(client, source=image.with_tag("v1"), destination=destination)
    stop_registry(source_registry)
    root = tmp_path / "trusted_root.json"
    shutil.copy(sigstore_instance.trusted_root_path, root)
    authorities(
        services,
        public_key=_any_public_key(),
        root=root,
        scopes=[f"{registry.host}/**"],
        remap=report.remap_identity,
    )
    attempts = refuse_connections(monkeypatch, sigstore_port(sigstore_instance))

    verified = await verify_image(services, image=str(destination), authority="ci-keyless")

    (signature,) = verified.require_verified()
    assert signature.kind is SignatureKind.keyless
    assert signature.subject == SUBJECT and signature.tlog is True
    assert attempts == []
    # The guard does refuse the instance, so an online check would have shown here.
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", sigstore_port(sigstore_instance)))


def _any_public_key() -> str:
    from tests.verify import cosign_wire as wire

    return wire.public_pem(wire.new_key())
