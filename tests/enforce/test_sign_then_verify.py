"""What Sealgate signs, Sealgate's verify flow accepts (and a replay onto another image is not)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from app.auth.scopes import Scope
from app.auth.tokens import Principal
from app.db.session import session_scope
from app.enforce.sign import parse_formats, sign_image
from app.enforce.verify import verify_image
from app.services import Services
from app.signing.keys import generate_key
from app.signing.signers import GENERATABLE, Algorithm
from tests.fixtures.images import push_random_image

ADMIN = Principal(name="ci", scopes=(Scope.parse("admin"),))


@pytest.mark.parametrize("algorithm", GENERATABLE)
async def test_both_formats_verify_with_the_public_key(
    services: Services, unique_repo: Callable[[str], str], algorithm: Algorithm
) -> None:
    with session_scope(services.sessions) as session:
        info = generate_key(
            session, settings=services.settings, name="k", algorithm=algorithm, scopes=["**"]
        )
    image, _ = await push_random_image(services.registry, unique_repo("app"))
    await sign_image(
        services, image=str(image), principal=ADMIN, key_name="k", formats=parse_formats("both")
    )
    report = await verify_image(services, image=str(image), key_pem=info.public_key_pem)
    assert sorted(s.format.value for s in report.signatures) == ["bundle", "legacy"], report
    assert {s.key_id for s in report.signatures} == {info.key_id}
    assert {s.digest for s in report.signatures} == {image.digest}


async def test_another_key_does_not_verify(
    services: Services, unique_repo: Callable[[str], str]
) -> None:
    with session_scope(services.sessions) as session:
        generate_key(
            session,
            settings=services.settings,
            name="k",
            algorithm=Algorithm.ecdsa_p256,
            scopes=["**"],
        )
        other = generate_key(
            session,
            settings=services.settings,
            name="o",
            algorithm=Algorithm.ecdsa_p256,
            scopes=["**"],
        )
    image, _ = await push_random_image(services.registry, unique_repo("app"))
    await sign_image(
        services, image=str(image), principal=ADMIN, key_name="k", formats=parse_formats("both")
    )
    report = await verify_image(services, image=str(image), key_pem=other.public_key_pem)
    assert report.signatures == ()
    assert len(report.rejections) == 2
