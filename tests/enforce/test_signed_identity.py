"""A signature vouches only where its signer was allowed (issue 12, item 4), on the real registry.

The attack: a ``sign:REG/team/*`` token signs ``REG/team/app`` with the key ``release``;
anyone with push rights copies the image and its signature referrers (and the fallback
index, and the ``.sig`` tag) into ``REG/other/app`` with plain registry pushes. An authority
for ``REG/other/*`` that trusts the same key must not take the copy for a signature of
``REG/other/app``: the signed statement names ``REG/team/app``.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

import pytest

from app.auth.scopes import Scope
from app.auth.tokens import Principal
from app.db.session import session_scope
from app.enforce.sign import parse_formats, sign_image, signature_records
from app.enforce.verify import verify_image
from app.errors import RegistryError, SigningError
from app.oci.client import RegistryClient
from app.oci.digests import fallback_tag
from app.oci.refs import ImageRef
from app.services import Services
from app.signing.keys import generate_key
from app.signing.signers import Algorithm
from app.verify.identity import SignedIdentityRule
from app.verify.trust import new_authority, save_authority
from tests.fixtures.images import push_random_image
from tests.fixtures.registry import RegistryProcess


async def copy_manifest(
    client: RegistryClient, source: ImageRef, target: ImageRef, *, tag: str | None = None
) -> str:
    """Copy the manifest ``source`` names (blobs, children first) into ``target``'s
    repository as it is, byte for byte: what any client with push rights can do."""
    manifest = await client.get_manifest(source)
    for child in manifest.manifests:
        await copy_manifest(client, source.with_digest(child.digest), target)
    blobs = [manifest.config] if manifest.config else []
    for blob in [*blobs, *manifest.layers]:
        if blob is None:
            continue
        data = await client.get_blob(source, blob.digest)
        await client.push_blob(target, data, media_type=blob.media_type)
    pushed = await client.push_manifest(
        target, manifest.raw, media_type=manifest.media_type, tag=tag
    )
    assert pushed.digest == manifest.digest
    return pushed.digest


async def copy_with_signatures(client: RegistryClient, source: ImageRef, target: ImageRef) -> None:
    """The image, its referrers, its fallback index and its ``.sig`` tag, copied as they are."""
    assert source.digest is not None
    await copy_manifest(client, source, target, tag="v1")
    referrers = await client.list_referrers(source)
    assert referrers, "the signed image has no referrers to copy"
    for referrer in referrers:
        await copy_manifest(client, source.with_digest(referrer.digest), target)
    for tag in (fallback_tag(source.digest), fallback_tag(source.digest) + ".sig"):
        try:
            await copy_manifest(client, source.with_tag(tag), target, tag=tag)
        except RegistryError:
            continue  # a registry with the referrers API keeps no fallback index


@dataclass
class Attack:
    registry: str
    team: ImageRef
    other: ImageRef
    public_pem: str


@pytest.fixture
async def attack(services: Services, registry: RegistryProcess) -> Attack:
    """``REG/teamX/app`` signed (bundle and legacy) by a ``sign:REG/teamX/*`` token with the
    key ``release``, and its byte-for-byte copy with every signature in ``REG/otherX/app``."""
    run = secrets.token_hex(4)
    reg = registry.host
    with session_scope(services.sessions) as session:
        info = generate_key(
            session,
            settings=services.settings,
            name="release",
            algorithm=Algorithm.ecdsa_p256,
            scopes=[f"{reg}/team{run}/*"],
        )
    team, _ = await push_random_image(services.registry, f"{reg}/team{run}/app")
    signer = Principal(name="team-ci", scopes=(Scope.parse(f"sign:{reg}/team{run}/*"),))
    await sign_image(
        services,
        image=str(team),
        principal=signer,
        key_name="release",
        formats=parse_formats("both"),
    )
    assert team.digest is not None
    other = ImageRef.parse(f"{reg}/other{run}/app@{team.digest}")
    await copy_with_signatures(services.registry, team, other)
    return Attack(registry=reg, team=team, other=other, public_pem=info.public_key_pem)


def _store(services: Services, **fields: object) -> None:
    with session_scope(services.sessions) as session:
        save_authority(session, new_authority(**fields))  # type: ignore[arg-type]


class TestCopiedSignatures:
    async def test_an_authority_for_the_copy_refuses_signatures_made_for_the_source(
        self, services: Services, attack: Attack
    ) -> None:
        other_scope = attack.other.name.rsplit("/", 1)[0] + "/*"
        _store(services, name="release-other", keys=[attack.public_pem], scopes=[other_scope])

        report = await verify_image(services, image=str(attack.other), authority="release-other")

        assert report.signatures == ()
        codes = {r.code for r in report.rejections}
        assert codes == {"verify.identity_mismatch"}, report.rejections
        assert len(report.rejections) == 2  # the bundle referrer and the legacy layer
        for rejection in report.rejections:
            assert attack.team.name in rejection.reason
            assert attack.other.name in rejection.reason

    async def test_the_source_still_verifies_by_default(
        self, services: Services, attack: Attack
    ) -> None:
        team_scope = attack.team.name.rsplit("/", 1)[0] + "/*"
        _store(services, name="release-team", keys=[attack.public_pem], scopes=[team_scope])

        report = await verify_image(services, image=str(attack.team), authority="release-team")

        assert sorted(s.format.value for s in report.signatures) == ["bundle", "legacy"]
        assert all(s.signed_identities == (attack.team.name,) for s in report.signatures)

    async def test_signed_identity_any_accepts_the_copy(
        self, services: Services, attack: Attack
    ) -> None:
        other_scope = attack.other.name.rsplit("/", 1)[0] + "/*"
        _store(
            services,
            name="release-any",
            keys=[attack.public_pem],
            scopes=[other_scope],
            signed_identity=SignedIdentityRule.parse("any"),
        )

        report = await verify_image(services, image=str(attack.other), authority="release-any")

        assert sorted(s.format.value for s in report.signatures) == ["bundle", "legacy"]

    async def test_a_remap_accepts_the_copy_and_nothing_else(
        self, services: Services, attack: Attack
    ) -> None:
        other_ns = attack.other.name.rsplit("/", 1)[0]
        team_ns = attack.team.name.rsplit("/", 1)[0]
        _store(
            services,
            name="mirror",
            keys=[attack.public_pem],
            scopes=[f"{other_ns}/*"],
            signed_identity=SignedIdentityRule.parse(None, [f"{other_ns}={team_ns}"]),
        )
        report = await verify_image(services, image=str(attack.other), authority="mirror")
        assert sorted(s.format.value for s in report.signatures) == ["bundle", "legacy"]

        # The same copy under another name of the namespace was signed for another app.
        renamed = ImageRef.parse(f"{other_ns}/api@{attack.team.digest}")
        await copy_with_signatures(services.registry, attack.team, renamed)
        refused = await verify_image(services, image=str(renamed), authority="mirror")
        assert refused.signatures == ()
        assert {r.code for r in refused.rejections} == {"verify.identity_mismatch"}


class TestKeyScopes:
    async def test_a_key_scoped_to_the_team_cannot_sign_elsewhere(
        self, services: Services, attack: Attack
    ) -> None:
        elsewhere, _ = await push_random_image(
            services.registry, f"{attack.registry}/other{secrets.token_hex(4)}/app"
        )
        # The token may sign there; the key may not.
        anywhere = Principal(name="ops", scopes=(Scope.parse("sign:**"),))
        with pytest.raises(SigningError) as e:
            await sign_image(
                services,
                image=str(elsewhere),
                principal=anywhere,
                key_name="release",
                formats=parse_formats("both"),
            )
        assert e.value.code == "signing.key_out_of_scope"
        assert e.value.http_status == 403
        assert elsewhere.name in e.value.message
        assert await services.registry.list_referrers(elsewhere) == []
        assert elsewhere.digest is not None
        with pytest.raises(RegistryError):
            await services.registry.get_manifest(
                elsewhere.with_tag(fallback_tag(elsewhere.digest) + ".sig")
            )
        assert signature_records(services, image=elsewhere.name) == []
