"""Signatures and scans kept in another registry: two real registries, A holding the image
and B the evidence (``SEALGATE_SIGNATURE_REPOSITORIES="A/**=B/signatures"``).

Signing, scan attachment, ``verify`` and a decision at admission all use B; A holds only
the image. The subject stays the image's digest and the identity its name in A: the
signature verifies under an authority scoped to A with the match-repository rule, and a
copy of the image under another name in A finds no evidence of its own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import delete

from app.auth.scopes import Scope
from app.auth.tokens import Principal
from app.db.models import ScanRecord
from app.db.session import session_scope
from app.enforce.deadline import Deadline
from app.enforce.outcome import DecisionRequest, Outcome
from app.enforce.pipeline import decide_and_store
from app.enforce.scans import image_scans, upload_scan
from app.enforce.sign import SignFormat, sign_image
from app.enforce.verify import verify_image
from app.errors import RegistryError
from app.oci.digests import fallback_tag
from app.oci.refs import ImageRef
from app.policy.input import Entrypoint, assumed_kubernetes
from app.services import Services
from app.transfer.copy import copy_image as carry_image
from app.transfer.export import export_images
from app.transfer.naming import SiteTarget
from app.transfer.site_import import import_layout
from tests.enforce.conftest import ServicesFactory, trust_new_key
from tests.fixtures.images import copy_image, push_random_image
from tests.fixtures.mirrors import copy_manifest
from tests.fixtures.registry import RegistryProcess, start_registry, stop_registry

ADMIN = Principal(name="test", scopes=(Scope.parse("admin"),))
REPORT = "trivy/dd_trivy_schema2_image_os_and_jar.json"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryProcess]:
    """Registry B: the signature store."""
    reg = start_registry(tmp_path_factory.mktemp("signature-store"))
    yield reg
    stop_registry(reg)


@pytest.fixture
def keeping(
    registry: RegistryProcess, store: RegistryProcess, make_services: ServicesFactory
) -> Services:
    """Services whose evidence for A's images lives in B."""
    return make_services(signature_repositories=f"{registry.host}/**={store.host}/signatures")


def in_store(store: RegistryProcess, image: ImageRef) -> ImageRef:
    return ImageRef(
        registry=store.host,
        repository=f"signatures/{image.repository}",
        digest=image.digest,
    )


async def admit(services: Services, image: str) -> Outcome:
    request = DecisionRequest(
        image=image,
        entrypoint=Entrypoint.admission,
        deadline=Deadline(10.0),
        kubernetes=assumed_kubernetes(Entrypoint.admission, "default"),
    )
    outcome, _ = await decide_and_store(request, services.decisions)
    return outcome


async def signed_in_store(
    keeping: Services, registry: RegistryProcess, unique_repo: Callable[[str], str]
) -> ImageRef:
    trust_new_key(keeping, scope=f"{registry.host}/**")
    image, _ = await push_random_image(keeping.registry, unique_repo("app"))
    await sign_image(
        keeping,
        image=str(image),
        principal=ADMIN,
        key_name="ci",
        formats=(SignFormat.bundle, SignFormat.legacy),
    )
    return image


async def test_signing_writes_the_evidence_to_the_signature_repository(
    keeping: Services,
    registry: RegistryProcess,
    store: RegistryProcess,
    unique_repo: Callable[[str], str],
    make_services: ServicesFactory,
) -> None:
    image = await signed_in_store(keeping, registry, unique_repo)
    plain = make_services().registry
    assert image.digest is not None

    home = in_store(store, image)
    (referrer,) = await plain.list_referrers(home)
    signature = await plain.get_manifest(home.with_digest(referrer.digest))
    assert signature.subject is not None and signature.subject.digest == image.digest
    assert (await plain.get_manifest(home.with_tag(fallback_tag(image.digest)))).is_index
    await plain.get_manifest(home.with_tag(fallback_tag(image.digest) + ".sig"))
    # A holds the image only.
    assert await plain.list_referrers(image) == []
    with pytest.raises(RegistryError) as missing:
        await plain.get_manifest(image.with_tag(fallback_tag(image.digest) + ".sig"))
    assert missing.value.code == "registry.not_found"


async def test_verify_and_admission_read_the_signature_repository(
    keeping: Services,
    registry: RegistryProcess,
    store: RegistryProcess,
    unique_repo: Callable[[str], str],
    make_services: ServicesFactory,
) -> None:
    image = await signed_in_store(keeping, registry, unique_repo)

    report = await verify_image(keeping, image=str(image), authority="ci")
    outcome = await admit(keeping, str(image))
    without_map = await admit(make_services(), str(image))

    assert {s.format.value for s in report.signatures} == {"bundle", "legacy"}
    assert outcome.allowed, outcome.decision
    assert outcome.full_input()["image"]["registry"] == registry.host
    assert outcome.served_by == (in_store(store, image).name,)
    # Without the map the same image has no signature at all.
    assert not without_map.allowed
    assert not without_map.full_input().get("signatures")


async def test_scans_are_attached_in_and_read_from_the_signature_repository(
    keeping: Services,
    registry: RegistryProcess,
    store: RegistryProcess,
    unique_repo: Callable[[str], str],
    asset: Callable[[str], Path],
    make_services: ServicesFactory,
) -> None:
    image = await signed_in_store(keeping, registry, unique_repo)
    await upload_scan(keeping, image=image, report=asset(REPORT).read_bytes(), uploaded_by="t")
    with session_scope(keeping.sessions) as session:
        session.execute(delete(ScanRecord))  # what remains is the referrer in B

    collected = await image_scans(keeping, image)
    outcome = await admit(keeping, str(image))

    assert [c.source.value for c in collected] == ["unsigned_referrer"]
    assert outcome.full_input()["scan"]["source"] == "unsigned_referrer"
    assert len(await make_services().registry.list_referrers(in_store(store, image))) == 2


async def test_the_identity_stays_the_image_name(
    keeping: Services,
    registry: RegistryProcess,
    store: RegistryProcess,
    unique_repo: Callable[[str], str],
    make_services: ServicesFactory,
) -> None:
    image = await signed_in_store(keeping, registry, unique_repo)
    assert image.digest is not None
    # The same digest under another name in A, and the first name's evidence copied to the
    # other name's home in B: the signature names the first image, so it does not count.
    other = await copy_image(keeping.registry, image, unique_repo("other"))
    plain = make_services().registry
    source, target = in_store(store, image), in_store(store, other)
    for descriptor in await plain.list_referrers(source):
        await copy_manifest(
            plain,
            source.with_digest(descriptor.digest),
            target.with_digest(descriptor.digest),
            tag=None,
        )
    tag = fallback_tag(image.digest)
    await copy_manifest(plain, source.with_tag(tag), target.with_tag(tag), tag=tag)

    outcome = await admit(keeping, str(other))

    assert not outcome.allowed
    assert not outcome.full_input().get("signatures")
    assert outcome.served_by == (target.name,)
    report = await verify_image(keeping, image=str(other), authority="ci")
    assert [r.code for r in report.rejections] == ["verify.identity_mismatch"]


async def evidence_at(services: Services, image: ImageRef) -> tuple[int, bool]:
    """How many referrers ``image`` (pinned) has in its own repository, and whether its
    legacy ``.sig`` tag is there, read without any signature-repository map."""
    assert image.digest is not None
    referrers = await services.registry.list_referrers(image)
    try:
        await services.registry.get_manifest(image.with_tag(fallback_tag(image.digest) + ".sig"))
    except RegistryError as e:
        assert e.code == "registry.not_found"
        return len(referrers), False
    return len(referrers), True


async def test_copy_carries_the_evidence_kept_in_the_signature_repository(
    keeping: Services,
    registry: RegistryProcess,
    store: RegistryProcess,
    unique_repo: Callable[[str], str],
    make_services: ServicesFactory,
) -> None:
    image = await signed_in_store(keeping, registry, unique_repo)
    # To A under another name (its evidence, by the map, in B) and to B (no rule: beside it).
    in_a = ImageRef.parse(f"{unique_repo('copied')}:v1")
    in_b = ImageRef(
        registry=store.host, repository=ImageRef.parse(unique_repo("site")).repository, tag="v1"
    )

    to_a = await carry_image(keeping.registry, source=image, destination=in_a)
    to_b = await carry_image(keeping.registry, source=image, destination=in_b)

    plain = make_services()
    assert (to_a.referrers, to_a.legacy_tags) == (1, 1)
    assert (to_b.referrers, to_b.legacy_tags) == (1, 1)
    home_of_a = in_store(store, in_a.with_digest(image.digest))
    assert await evidence_at(plain, home_of_a) == (1, True)
    assert await evidence_at(plain, in_a.with_digest(image.digest)) == (0, False)
    assert await evidence_at(plain, in_b.with_digest(image.digest)) == (1, True)


async def test_export_reads_and_import_writes_the_evidence_where_each_side_keeps_it(
    keeping: Services,
    registry: RegistryProcess,
    store: RegistryProcess,
    unique_repo: Callable[[str], str],
    make_services: ServicesFactory,
    tmp_path: Path,
) -> None:
    image = await signed_in_store(keeping, registry, unique_repo)
    archive = tmp_path / "site.tar"

    exported = await export_images(keeping.registry, images=[image], output=archive)
    site = make_services()  # the site keeps evidence beside its images
    target = SiteTarget.parse(f"{store.host}/plant")
    await import_layout(
        site.registry, layout=archive, target=target, max_manifest_bytes=4 * 1024 * 1024
    )

    assert exported.images[0]["referrers"] == 1 and exported.images[0]["legacy_tags"] == 1
    assert await evidence_at(site, target.place(image).with_digest(image.digest)) == (1, True)
