"""``POST /v1/verify`` with what a hostile tenant sends, against a real ``sealgate serve``:
a catastrophic identity regexp answers at once and ``/healthz`` stays responsive; a new
trusted root with every request writes no file and is kept in a bounded cache only.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.auth.scopes import Scope
from app.auth.tokens import Principal
from app.config import Settings
from app.enforce.sign import sign_image
from app.oci.refs import ImageRef
from app.services import Services
from app.verify.trusted_root import ROOT_CACHE_SIZE
from tests.fixtures.images import push_random_image
from tests.fixtures.registry import RegistryProcess
from tests.fixtures.server import HealthProbe, ServerProcess, bearer_for
from tests.fixtures.sigstore import DEFAULT_ISSUER, SigstoreInstance
from tests.verify.test_patterns import CATASTROPHIC, LONG_SUBJECT


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


async def keyless_image(
    services: Services, registry: RegistryProcess, instance: SigstoreInstance, subject: str
) -> ImageRef:
    image, _ = await push_random_image(
        services.registry, f"{registry.host}/hostile{secrets.token_hex(4)}/app"
    )
    await sign_image(
        services,
        image=str(image),
        principal=Principal(name="test", scopes=(Scope.parse("admin"),)),
        identity_token=instance.mint_identity_token(subject),
    )
    return image


async def test_a_hostile_regexp_neither_stalls_the_answer_nor_healthz(
    services: Services,
    settings: Settings,
    registry: RegistryProcess,
    sigstore_instance: SigstoreInstance,
    serve: Callable[..., ServerProcess],
) -> None:
    image = await keyless_image(services, registry, sigstore_instance, LONG_SUBJECT)
    headers = bearer_for(settings, "verify:**")
    server = serve()
    body = {
        "image": str(image),
        "certificate_identity_regexp": CATASTROPHIC,
        "certificate_oidc_issuer": DEFAULT_ISSUER,
        "trusted_root": sigstore_instance.trusted_root_path.read_text(),
    }

    with HealthProbe(server.url) as probe:
        # Generous: Python's re would need about 2**60 steps here, and never answer.
        answer = httpx.post(f"{server.url}/v1/verify", json=body, headers=headers, timeout=30)

    assert answer.status_code == 422, answer.text
    rejections = answer.json()["error"]["details"]["rejections"]
    assert [r["code"] for r in rejections] == ["verify.identity_mismatch"]
    probe.assert_responsive(bound=5.0)

    refused = httpx.post(
        f"{server.url}/v1/verify",
        json={**body, "certificate_identity_regexp": r"(ci)\1"},
        headers=headers,
        timeout=30,
    )
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "input.invalid_pattern"
    assert r"(ci)\\1" in refused.json()["error"]["message"]


def files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*"))


async def test_new_trusted_roots_write_no_file(
    services: Services,
    settings: Settings,
    registry: RegistryProcess,
    sigstore_instance: SigstoreInstance,
    serve: Callable[..., ServerProcess],
    tmp_path: Path,
) -> None:
    subject = "ci@example.com"
    image = await keyless_image(services, registry, sigstore_instance, subject)
    root = json.loads(sigstore_instance.trusted_root_path.read_text())
    temp = tmp_path / "tmp"
    temp.mkdir()
    server = serve(env={"TMPDIR": str(temp)})
    headers = bearer_for(settings, "verify:**")
    before = files_under(temp)

    with httpx.Client(base_url=server.url, headers=headers, timeout=30) as client:
        for n in range(3 * ROOT_CACHE_SIZE):
            # The same root, written differently each time: a new text for the service.
            text = json.dumps(root, indent=n % 5, separators=(",", ": " + " " * n))
            answer = client.post(
                "/v1/verify",
                json={
                    "image": str(image),
                    "certificate_identity": subject,
                    "certificate_oidc_issuer": DEFAULT_ISSUER,
                    "trusted_root": text,
                },
            )
            assert answer.status_code == 200, answer.text

    assert files_under(temp) == before
