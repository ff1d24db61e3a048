"""``sealgate sign`` in process and against a real service (uvicorn on 127.0.0.1)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterator

import httpx
import pytest
import uvicorn

from app.auth.tokens import create_token
from app.config import Settings
from app.db.session import make_engine, make_session_factory, session_scope
from app.main import create_app
from app.oci.client import RegistryClient
from app.oci.refs import ImageRef
from tests.conftest import Cli
from tests.fixtures.images import (
    push_multiplatform_index,
    push_random_image_sync,
    registry_settings,
)
from tests.fixtures.registry import RegistryProcess, free_port
from tests.fixtures.sigstore import SigstoreInstance


@pytest.fixture
def image(registry: RegistryProcess, unique_repo: Callable[[str], str]) -> ImageRef:
    ref, _ = push_random_image_sync(registry, unique_repo("app").split("/", 1)[1])
    return ref


def _referrers(registry: RegistryProcess, image: ImageRef) -> int:
    async def _count() -> int:
        client = RegistryClient.from_settings(registry_settings(registry))
        try:
            return len(await client.list_referrers(image))
        finally:
            await client.aclose()

    return asyncio.run(_count())


class TestInProcess:
    def test_sign_by_tag_prints_digest_signatures_and_formats(
        self, sealgate: Cli, image: ImageRef, registry: RegistryProcess
    ) -> None:
        assert sealgate("key", "generate", "ci", "--scope", "**").exit_code == 0
        result = sealgate(
            "sign", f"{image.name}:v1", "--key", "ci", "--format", "both", "-a", "git=abc"
        )
        assert result.exit_code == 0, result.output
        body = json.loads(result.stdout)
        assert body["digest"] == image.digest
        assert body["formats"] == ["bundle", "legacy"]
        assert all(s["signature_digest"].startswith("sha256:") for s in body["signatures"])
        assert _referrers(registry, image) == 1

    def test_recursive(
        self, sealgate: Cli, registry: RegistryProcess, unique_repo: Callable[[str], str]
    ) -> None:
        async def _push() -> ImageRef:
            client = RegistryClient.from_settings(registry_settings(registry))
            try:
                ref, _ = await push_multiplatform_index(client, unique_repo("multi"))
                return ref
            finally:
                await client.aclose()

        index = asyncio.run(_push())
        sealgate("key", "generate", "ci", "--scope", "**")
        result = sealgate("sign", str(index), "--key", "ci", "--recursive")
        assert result.exit_code == 0, result.output
        assert len(json.loads(result.stdout)["digests"]) == 3

    @pytest.mark.parametrize(
        ("args", "message"),
        [
            ([], "exactly one of --key NAME or --sigstore"),
            (["--key", "ci", "--sigstore"], "exactly one of --key NAME or --sigstore"),
            (["--key", "ci", "--format", "pdf"], "signature format 'pdf' is not known"),
            (["--key", "ci", "-a", "novalue"], "is not KEY=VALUE"),
            (["--key", "ci", "--identity-token", "t"], "--identity-token goes with --sigstore"),
            (["--key", "nope"], "no key named 'nope'"),
        ],
    )
    def test_usage_errors_are_one_line(
        self, sealgate: Cli, image: ImageRef, args: list[str], message: str
    ) -> None:
        result = sealgate("sign", str(image), *args)
        assert result.exit_code == 1
        assert message in result.stderr
        assert "Traceback" not in result.output


@pytest.fixture
def service(settings: Settings, clean_database: object) -> Iterator[str]:
    """A real uvicorn serving the app on 127.0.0.1 (it owns and closes its services)."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings=settings), host="127.0.0.1", port=port, log_config=None)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 15
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("uvicorn did not start")
        time.sleep(0.02)
    yield url
    server.should_exit = True
    thread.join(timeout=10)


def _token(settings: Settings, name: str, scope: str) -> str:
    engine = make_engine(settings.database_url)
    try:
        with session_scope(make_session_factory(engine)) as session:
            return create_token(session, name=name, scopes=[scope]).token
    finally:
        engine.dispose()


class TestRemote:
    def test_signs_through_the_service_with_a_scoped_token(
        self,
        sealgate: Cli,
        service: str,
        settings: Settings,
        image: ImageRef,
        registry: RegistryProcess,
    ) -> None:
        sealgate("key", "generate", "ci", "--scope", "**")
        team = image.name.rsplit("/", 1)[0]
        sealgate.env["SEALGATE_URL"] = service
        sealgate.env["SEALGATE_TOKEN"] = _token(settings, "ci", f"sign:{team}/*")
        result = sealgate("sign", f"{image.name}:v1", "--key", "ci")
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["digest"] == image.digest
        records = httpx.get(
            f"{service}/v1/images/{image.name}/signatures",
            headers={"Authorization": f"Bearer {sealgate.env['SEALGATE_TOKEN']}"},
        ).json()
        assert records[0]["signed_by"] == "ci"
        assert _referrers(registry, image) == 1

    def test_out_of_scope_token_fails_and_writes_nothing(
        self,
        sealgate: Cli,
        service: str,
        settings: Settings,
        image: ImageRef,
        registry: RegistryProcess,
    ) -> None:
        sealgate("key", "generate", "ci", "--scope", "**")
        sealgate.env["SEALGATE_URL"] = service
        sealgate.env["SEALGATE_TOKEN"] = _token(settings, "other", "sign:elsewhere/**")
        result = sealgate("sign", str(image), "--key", "ci")
        assert result.exit_code == 1
        assert "may not sign" in result.stderr
        assert "[auth.out_of_scope]" in result.stderr
        assert _referrers(registry, image) == 0

    def test_missing_token_and_unreachable_service(self, sealgate: Cli, image: ImageRef) -> None:
        sealgate.env["SEALGATE_URL"] = f"http://127.0.0.1:{free_port()}"
        no_token = sealgate("sign", str(image), "--key", "ci")
        assert no_token.exit_code == 1
        assert "SEALGATE_TOKEN is not" in no_token.stderr
        sealgate.env["SEALGATE_TOKEN"] = "sgt_x"
        down = sealgate("sign", str(image), "--key", "ci")
        assert down.exit_code == 1
        assert "cannot reach Sealgate" in down.stderr


class TestKeyless:
    def test_sigstore_with_identity_token(
        self,
        sealgate: Cli,
        image: ImageRef,
        registry: RegistryProcess,
        sigstore_instance: SigstoreInstance,
    ) -> None:
        sealgate.env["SEALGATE_SIGSTORE_TRUST_CONFIG"] = str(sigstore_instance.trust_config_path)
        token = sigstore_instance.mint_identity_token("ci@example.com")
        result = sealgate("sign", str(image), "--sigstore", "--identity-token", token)
        assert result.exit_code == 0, result.output
        body = json.loads(result.stdout)
        assert body["identity"] == "ci@example.com"
        assert body["key_name"] is None
        assert token not in result.output
        assert _referrers(registry, image) == 1

    def test_sigstore_without_any_token_says_how_to_get_one(
        self, sealgate: Cli, image: ImageRef
    ) -> None:
        sealgate.env["SIGSTORE_ID_TOKEN"] = ""
        result = sealgate("sign", str(image), "--sigstore")
        assert result.exit_code == 1
        # "needs an OIDC identity token" here; on a CI with ambient detection, why it failed.
        assert "OIDC" in result.stderr
        assert "Traceback" not in result.output
