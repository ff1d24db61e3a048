"""Redirects: followed only for manifest and blob reads, and never with credentials elsewhere.

The registry is the real basic-auth ``docker-registry`` behind ``RedirectingRegistryStandIn``,
which answers chosen requests with a redirect; the other origin is a ``RedirectTargetStandIn``
on another loopback port (another origin: credentials must not go there). Downgrades come from
a ``HostileRegistryStandIn`` speaking TLS.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from app.errors import RegistryError
from app.oci import media
from app.oci.client import RegistryClient
from app.oci.digests import compute_digest
from app.oci.refs import ImageRef
from tests.fixtures.images import push_random_image, registry_client
from tests.fixtures.registry import RegistryProcess
from tests.fixtures.standins import (
    HostileRegistryStandIn,
    RedirectingRegistryStandIn,
    RedirectTargetStandIn,
    ResolverStandIn,
    StandInRequest,
    StandInResponse,
)
from tests.fixtures.tls import TlsFiles


async def _expect(code: str, awaitable: Any) -> RegistryError:
    with pytest.raises(RegistryError) as caught:
        await awaitable
    assert caught.value.code == code, caught.value.message
    return caught.value


@pytest.fixture
async def front_client(
    redirecting_registry: RedirectingRegistryStandIn, auth_registry: RegistryProcess
) -> AsyncIterator[RegistryClient]:
    """A client holding the real registry's basic credentials for the front's host."""
    async with registry_client(
        auth_registry,
        insecure_registries=[redirecting_registry.host],
        registry_username=auth_registry.username,
        registry_password=auth_registry.password,
        registry_credentials_host=redirecting_registry.host,
        chunked_upload_threshold=1024,
        registry_retries=0,
    ) as client:
        yield client


def _basic(registry: RegistryProcess) -> str:
    pair = f"{registry.username}:{registry.password}".encode()
    return "Basic " + base64.b64encode(pair).decode()


def _no_credentials_reached(target: RedirectTargetStandIn) -> None:
    assert all("authorization" not in r.headers for r in target.seen), target.seen


class TestReadsAreFollowed:
    async def test_blob_read_goes_to_storage_without_credentials(
        self,
        redirecting_registry: RedirectingRegistryStandIn,
        redirect_target: RedirectTargetStandIn,
        front_client: RegistryClient,
        auth_registry: RegistryProcess,
    ) -> None:
        ref, manifest = await push_random_image(front_client, f"{redirecting_registry.host}/r/app")
        assert manifest.config is not None
        digest = manifest.config.digest
        config = await front_client.get_blob(ref, digest)
        blob_path = f"/v2/r/app/blobs/{digest}"
        redirecting_registry.redirect = lambda r: (
            f"{redirect_target.url}/bucket{r.path}?X-Signature=s3cr3t"
            if r.method == "GET" and r.path == blob_path
            else None
        )
        redirect_target.routes[("GET", f"/bucket{blob_path}")] = StandInResponse(body=config)

        assert await front_client.get_blob(ref, digest) == config

        assert [(r.method, r.path) for r in redirect_target.seen] == [
            ("GET", f"/bucket{blob_path}")
        ]
        _no_credentials_reached(redirect_target)
        asked = [r for r in redirecting_registry.seen if r.path == blob_path]
        assert asked[-1].headers.get("authorization") == _basic(auth_registry)

    async def test_same_origin_manifest_redirect_keeps_credentials(
        self,
        redirecting_registry: RedirectingRegistryStandIn,
        front_client: RegistryClient,
    ) -> None:
        ref, manifest = await push_random_image(front_client, f"{redirecting_registry.host}/r/same")
        old_path = "/v2/r/same/manifests/old"
        redirecting_registry.redirect = lambda r: (
            "/v2/r/same/manifests/v1" if r.path == old_path else None
        )
        moved = await front_client.get_manifest(ImageRef.parse(f"{ref.name}:old"))
        assert moved.raw == manifest.raw


class TestWritesAreNotFollowed:
    @pytest.mark.parametrize("step", ["POST", "PATCH", "PUT"])
    async def test_upload_redirected_elsewhere_is_refused(
        self,
        redirecting_registry: RedirectingRegistryStandIn,
        redirect_target: RedirectTargetStandIn,
        front_client: RegistryClient,
        step: str,
    ) -> None:
        # The other host plays along: it would accept the upload and confirm it.
        data = b"layer " * 400  # above the 1 KiB chunk threshold: POST, PATCH, PUT
        redirect_target.default = StandInResponse(
            status=202 if step != "PUT" else 201,
            headers={"Location": "/upload/1", "Docker-Content-Digest": compute_digest(data)},
        )
        redirecting_registry.redirect = lambda r: (
            f"{redirect_target.url}/collect" if r.method == step and "/blobs/" in r.path else None
        )
        ref = ImageRef.parse(f"{redirecting_registry.host}/w/app:v1")

        error = await _expect(
            "registry.redirect_refused",
            front_client.push_blob(ref, data, media_type=media.OCI_LAYER),
        )

        assert f"{step} /v2/w/app/blobs/uploads/" in error.message
        assert redirect_target.host in error.message and "s3cr3t" not in error.message
        assert redirect_target.seen == []

    async def test_manifest_push_redirected_elsewhere_is_refused(
        self,
        redirecting_registry: RedirectingRegistryStandIn,
        redirect_target: RedirectTargetStandIn,
        front_client: RegistryClient,
    ) -> None:
        ref, image = await push_random_image(front_client, f"{redirecting_registry.host}/w/m")
        redirect_target.default = StandInResponse(status=201)
        redirecting_registry.redirect = lambda r: (
            f"{redirect_target.url}{r.path}"
            if r.method == "PUT" and "/manifests/" in r.path
            else None
        )
        document = json.loads(image.raw)
        document["annotations"] = {"pushed": "elsewhere"}

        await _expect(
            "registry.redirect_refused",
            front_client.push_manifest(ref, document, media_type=media.OCI_MANIFEST, tag="v2"),
        )

        assert redirect_target.seen == []
        redirecting_registry.redirect = lambda r: None
        await _expect(
            "registry.not_found", front_client.get_manifest(ImageRef.parse(f"{ref.name}:v2"))
        )


class TestFollowedReadsAreChecked:
    async def test_target_asking_for_a_token_gets_no_credentials(
        self,
        redirecting_registry: RedirectingRegistryStandIn,
        redirect_target: RedirectTargetStandIn,
        front_client: RegistryClient,
    ) -> None:
        # A 401 from the other host must not be learnt as the registry's challenge: that
        # would send the registry's password to the realm it names.
        ref, manifest = await push_random_image(front_client, f"{redirecting_registry.host}/c/a")
        assert manifest.config is not None
        digest = manifest.config.digest
        redirecting_registry.redirect = lambda r: (
            f"{redirect_target.url}/b/{digest}" if "/blobs/" in r.path else None
        )
        redirect_target.routes[("GET", f"/b/{digest}")] = StandInResponse(
            status=401,
            headers={"WWW-Authenticate": f'Bearer realm="{redirect_target.url}/token",service="x"'},
        )
        redirect_target.routes[("GET", "/token")] = StandInResponse.json({"token": "t"})

        error = await _expect("registry.unauthorized", front_client.get_blob(ref, digest))

        assert redirect_target.host in error.message
        assert [r.path for r in redirect_target.seen] == [f"/b/{digest}"]
        _no_credentials_reached(redirect_target)

    async def test_foreign_error_text_is_not_shown(
        self,
        redirecting_registry: RedirectingRegistryStandIn,
        redirect_target: RedirectTargetStandIn,
        front_client: RegistryClient,
    ) -> None:
        digest = compute_digest(b"some blob")
        redirecting_registry.redirect = lambda r: (
            f"{redirect_target.url}/b" if "/blobs/" in r.path else None
        )
        redirect_target.routes[("GET", "/b")] = StandInResponse.json(
            {"errors": [{"code": "DENIED", "message": "internal-bucket prod-secrets-7"}]},
            status=403,
        )
        ref = ImageRef.parse(f"{redirecting_registry.host}/f/app:v1")

        error = await _expect("registry.forbidden", front_client.get_blob(ref, digest))

        assert "prod-secrets" not in error.message and "DENIED" not in error.message
        assert "403" in error.message and redirect_target.host in error.message

    async def test_hops_are_capped(
        self, redirecting_registry: RedirectingRegistryStandIn, front_client: RegistryClient
    ) -> None:
        def again(request: StandInRequest) -> str | None:
            hop = int(request.query.get("hop", ["0"])[0])
            return f"{request.path}?hop={hop + 1}" if "/manifests/" in request.path else None

        redirecting_registry.redirect = again
        ref = ImageRef.parse(f"{redirecting_registry.host}/h/app:v1")

        error = await _expect("registry.redirect_refused", front_client.get_manifest(ref))

        assert "more than 5 times" in error.message
        assert len([r for r in redirecting_registry.seen if "/manifests/" in r.path]) == 6

    async def test_plain_http_to_a_host_not_allowed_it_is_refused(
        self,
        redirecting_registry: RedirectingRegistryStandIn,
        redirect_target: RedirectTargetStandIn,
        resolver_standin: ResolverStandIn,
        front_client: RegistryClient,
    ) -> None:
        # The name leads to the redirect target, but plain HTTP is only for loopback names
        # and SEALGATE_INSECURE_REGISTRIES: it is not even looked up.
        port = redirect_target.host.rsplit(":", 1)[1]
        resolver_standin.names["cdn.standin.test"] = ["127.0.0.1"]
        redirecting_registry.redirect = lambda r: (
            f"http://cdn.standin.test:{port}/b" if "/blobs/" in r.path else None
        )
        redirect_target.routes[("GET", "/b")] = StandInResponse(body=b"blob")
        ref = ImageRef.parse(f"{redirecting_registry.host}/p/app:v1")

        error = await _expect(
            "registry.redirect_refused", front_client.get_blob(ref, compute_digest(b"blob"))
        )

        assert "plain HTTP" in error.message
        assert redirect_target.seen == [] and resolver_standin.answers == {}

    async def test_referrers_page_redirect_is_refused(
        self, redirecting_registry: RedirectingRegistryStandIn, front_client: RegistryClient
    ) -> None:
        subject = compute_digest(b"subject")
        redirecting_registry.redirect = lambda r: (
            f"{r.path}?moved=1" if "/referrers/" in r.path and not r.query else None
        )
        ref = ImageRef.parse(f"{redirecting_registry.host}/l/app@{subject}")
        await _expect("registry.redirect_refused", front_client.list_referrers(ref))


@pytest.fixture
def tls_hostile(tls_files: TlsFiles) -> Callable[[], HostileRegistryStandIn]:
    def _make() -> HostileRegistryStandIn:
        return HostileRegistryStandIn(tls=tls_files)

    return _make


class TestDowngrade:
    async def test_https_registry_redirect_to_plain_http_is_refused(
        self,
        tls_hostile: Callable[[], HostileRegistryStandIn],
        redirect_target: RedirectTargetStandIn,
        registry: RegistryProcess,
        tls_files: TlsFiles,
    ) -> None:
        body = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": media.OCI_MANIFEST,
                "config": media.EMPTY_CONFIG.to_json(),
                "layers": [],
            }
        ).encode()
        # The target is loopback, where plain HTTP is otherwise allowed: only the downgrade
        # from the registry's HTTPS stops it.
        redirect_target.routes[("GET", "/m")] = StandInResponse(
            headers={"Content-Type": media.OCI_MANIFEST}, body=body
        )
        with tls_hostile() as server:
            assert server.url.startswith("https://")
            server.routes[("GET", "/v2/d/app/manifests/v1")] = StandInResponse(
                status=302, headers={"Location": f"{redirect_target.url}/m"}
            )
            async with registry_client(
                registry, registry_ca_bundle=tls_files.ca_cert, registry_retries=0
            ) as client:
                ref = ImageRef.parse(f"{server.host}/d/app:v1")
                error = await _expect("registry.redirect_refused", client.get_manifest(ref))
        assert "from HTTPS down to plain HTTP" in error.message
        assert redirect_target.seen == []
