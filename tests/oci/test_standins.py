"""Protocol paths no installable registry offers, against stand-ins on 127.0.0.1.

The native referrers API and the bearer-token flow run through stand-ins that proxy the real
``docker-registry``; hostile behaviour (wrong digests, truncation, oversized or invalid bodies,
error statuses, silence, endless pages) comes from ``HostileRegistryStandIn``.
"""

from __future__ import annotations

import asyncio
import gzip
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from app.errors import RegistryError
from app.oci import media
from app.oci.client import RegistryClient
from app.oci.descriptor import Descriptor
from app.oci.digests import compute_digest, fallback_tag
from app.oci.refs import ImageRef
from tests.fixtures.images import push_random_image, registry_client
from tests.fixtures.registry import RegistryProcess
from tests.fixtures.standins import (
    BearerTokenStandIn,
    HostileRegistryStandIn,
    LostUpdateStandIn,
    ReferrersApiStandIn,
    StandInRequest,
    StandInResponse,
)

ARTIFACT = "application/vnd.example.sealgate.test+json"
OTHER = "application/vnd.example.other+json"


async def _expect(code: str, awaitable: Any) -> RegistryError:
    with pytest.raises(RegistryError) as caught:
        await awaitable
    assert caught.value.code == code, caught.value.message
    return caught.value


class TestReferrersApi:
    async def test_push_with_oci_subject_skips_the_fallback_tag(
        self, referrers_api_standin: ReferrersApiStandIn, registry: RegistryProcess
    ) -> None:
        async with registry_client(registry) as client:
            ref, image = await push_random_image(client, f"{referrers_api_standin.host}/api/app")
            referrer = await client.push_referrer(
                ref,
                artifact_type=ARTIFACT,
                layers=[(b"{}", "application/json", {})],
                annotations={"k": "v"},
            )
            listed = await client.list_referrers(ref)
            assert [(d.digest, d.artifact_type, d.annotations) for d in listed] == [
                (referrer.digest, ARTIFACT, {"k": "v"})
            ]
            tag = fallback_tag(image.digest)
            assert not any(tag in path for _, path in referrers_api_standin.requests)
            direct = ImageRef.parse(f"{registry.host}/api/app:{tag}")
            await _expect("registry.not_found", client.get_manifest(direct))

    @pytest.mark.parametrize(
        ("count", "listed_count", "pages_read"),
        [(120, 120, 3), (3000, 128, 3)],  # pages of 50; the cap (128) is on the third
    )
    async def test_pagination_up_to_the_cap(
        self,
        referrers_api_standin: ReferrersApiStandIn,
        oci_client: RegistryClient,
        count: int,
        listed_count: int,
        pages_read: int,
    ) -> None:
        ref, image = await push_random_image(oci_client, f"{referrers_api_standin.host}/api/pages")
        referrers_api_standin.add_synthetic_referrers(
            "api/pages", image.digest, count=count, artifact_type=ARTIFACT
        )
        listed = await oci_client.list_referrers(ref)
        assert len({d.digest for d in listed}) == len(listed) == listed_count
        pages = [p for _, p in referrers_api_standin.requests if "/referrers/" in p]
        assert len(pages) == pages_read

    async def test_page_cap_truncates_a_long_listing(
        self,
        referrers_api_standin: ReferrersApiStandIn,
        registry: RegistryProcess,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        referrers_api_standin.page_size = 2
        async with registry_client(registry, max_referrer_pages=3) as client:
            ref, image = await push_random_image(client, f"{referrers_api_standin.host}/api/cap")
            referrers_api_standin.add_synthetic_referrers(
                "api/cap", image.digest, count=10, artifact_type=ARTIFACT
            )
            listed = await client.list_referrers(ref)
        assert len(listed) == 6  # three pages of two; the rest is ignored
        pages = [p for _, p in referrers_api_standin.requests if "/referrers/" in p]
        assert len(pages) == 3
        assert "span more than 3 pages" in caplog.text

    async def test_filter_applied_by_the_registry(
        self, referrers_api_standin: ReferrersApiStandIn, oci_client: RegistryClient
    ) -> None:
        ref, image = await push_random_image(oci_client, f"{referrers_api_standin.host}/api/f")
        for artifact_type in (ARTIFACT, OTHER):
            referrers_api_standin.add_synthetic_referrers(
                "api/f", image.digest, count=3, artifact_type=artifact_type
            )
        listed = await oci_client.list_referrers(ref, artifact_type=OTHER)
        assert [d.artifact_type for d in listed] == [OTHER] * 3
        assert any("artifactType=" in p for _, p in referrers_api_standin.requests)

    async def test_filter_applied_here_when_the_registry_did_not(
        self, referrers_api_standin: ReferrersApiStandIn, oci_client: RegistryClient
    ) -> None:
        referrers_api_standin.apply_filter = False
        ref, image = await push_random_image(oci_client, f"{referrers_api_standin.host}/api/nf")
        for artifact_type in (ARTIFACT, OTHER, ARTIFACT):
            referrers_api_standin.add_synthetic_referrers(
                "api/nf", image.digest, count=2, artifact_type=artifact_type
            )
        listed = await oci_client.list_referrers(ref, artifact_type=ARTIFACT)
        assert [d.artifact_type for d in listed] == [ARTIFACT] * 4


class TestBearerTokens:
    async def test_token_flow_with_basic_credentials_and_caching(
        self, bearer_token_standin: BearerTokenStandIn, auth_registry: RegistryProcess
    ) -> None:
        async with registry_client(
            auth_registry,
            credentials=True,
            registry_credentials_host=bearer_token_standin.host,
        ) as client:
            ref, image = await push_random_image(client, f"{bearer_token_standin.host}/tok/app")
            tag_ref = ImageRef.parse(f"{ref.name}:v1")
            assert await client.resolve_digest(tag_ref) == image.digest
            issued = len(bearer_token_standin.token_requests)
            for _ in range(3):
                await client.resolve_digest(tag_ref)
            assert len(bearer_token_standin.token_requests) == issued  # cached per scope
            scopes = {q["scope"][0] for q in bearer_token_standin.token_requests}
            assert scopes == {"repository:tok/app:pull", "repository:tok/app:pull,push"}
            assert all(
                q["service"] == [BearerTokenStandIn.service]
                for q in bearer_token_standin.token_requests
            )

    async def test_revoked_token_is_replaced(
        self, bearer_token_standin: BearerTokenStandIn, auth_registry: RegistryProcess
    ) -> None:
        async with registry_client(
            auth_registry, credentials=True, registry_credentials_host=bearer_token_standin.host
        ) as client:
            ref, image = await push_random_image(client, f"{bearer_token_standin.host}/tok/rv")
            bearer_token_standin.tokens.clear()  # the server forgets every token it issued
            before = len(bearer_token_standin.token_requests)
            assert (await client.get_manifest(ref)).digest == image.digest
            assert len(bearer_token_standin.token_requests) == before + 1

    async def test_no_credentials_is_refused_by_the_token_endpoint(
        self, bearer_token_standin: BearerTokenStandIn, auth_registry: RegistryProcess
    ) -> None:
        async with registry_client(auth_registry) as client:
            error = await _expect(
                "registry.unauthorized",
                client.resolve_digest(ImageRef.parse(f"{bearer_token_standin.host}/tok/x:v1")),
            )
            assert "refused anonymous access" in error.message

    async def test_anonymous_pull_token(self, auth_registry: RegistryProcess) -> None:
        with BearerTokenStandIn(auth_registry, anonymous_pull=True) as stand_in:
            async with (
                registry_client(
                    auth_registry, credentials=True, registry_credentials_host=stand_in.host
                ) as writer,
                registry_client(auth_registry) as reader,
            ):
                ref, image = await push_random_image(writer, f"{stand_in.host}/anon/app")
                assert (await reader.get_manifest(ref)).digest == image.digest
                await _expect(
                    "registry.unauthorized",
                    reader.push_blob(ref, b"not allowed", media_type=media.OCI_LAYER),
                )

    async def test_plain_http_realm_on_a_remote_host_is_refused(
        self, hostile_registry: HostileRegistryStandIn, oci_client: RegistryClient
    ) -> None:
        hostile_registry.routes[("GET", "/v2/x/app/manifests/v1")] = StandInResponse.json(
            {"errors": []},
            status=401,
            **{"WWW-Authenticate": 'Bearer realm="http://tokens.example.invalid/t",service="s"'},
        )
        error = await _expect(
            "registry.unauthorized",
            oci_client.get_manifest(ImageRef.parse(f"{hostile_registry.host}/x/app:v1")),
        )
        assert "plain HTTP" in error.message


@pytest.fixture
async def hostile(
    hostile_registry: HostileRegistryStandIn, registry: RegistryProcess
) -> AsyncIterator[tuple[HostileRegistryStandIn, RegistryClient]]:
    """The hostile stand-in and a client with small limits, short time-outs and 2 retries."""
    async with registry_client(
        registry,
        max_manifest_bytes=4096,
        registry_request_timeout=0.5,
        registry_total_timeout=5.0,
        registry_retries=2,
        max_referrers=128,
    ) as client:
        yield hostile_registry, client


def _manifest_bytes(**extra: Any) -> bytes:
    document = {
        "schemaVersion": 2,
        "mediaType": media.OCI_MANIFEST,
        "config": media.EMPTY_CONFIG.to_json(),
        "layers": [],
        **extra,
    }
    return json.dumps(document).encode()


class TestHostileRegistry:
    def _ref(self, server: HostileRegistryStandIn, reference: str = "v1") -> ImageRef:
        sep = "@" if ":" in reference else ":"
        return ImageRef.parse(f"{server.host}/evil/app{sep}{reference}")

    @pytest.mark.parametrize("head_status", [200, 405])
    async def test_resolve_falls_back_to_get(
        self, hostile: tuple[HostileRegistryStandIn, RegistryClient], head_status: int
    ) -> None:
        server, client = hostile
        body = _manifest_bytes()
        server.routes[("HEAD", "/v2/evil/app/manifests/v1")] = StandInResponse(
            status=head_status  # and no Docker-Content-Digest
        )
        server.routes[("GET", "/v2/evil/app/manifests/v1")] = StandInResponse(
            headers={"Content-Type": media.OCI_MANIFEST}, body=body
        )
        assert await client.resolve_digest(self._ref(server)) == compute_digest(body)
        assert [m for m, _ in server.requests] == ["HEAD", "GET"]

    async def test_wrong_content_for_a_digest(
        self, hostile: tuple[HostileRegistryStandIn, RegistryClient]
    ) -> None:
        server, client = hostile
        claimed = compute_digest(_manifest_bytes())
        server.routes[("GET", f"/v2/evil/app/manifests/{claimed}")] = StandInResponse(
            headers={"Content-Type": media.OCI_MANIFEST}, body=_manifest_bytes(annotations={})
        )
        error = await _expect(
            "registry.digest_mismatch", client.get_manifest(self._ref(server, claimed))
        )
        assert claimed in error.message and server.host in error.message

    async def test_docker_content_digest_that_lies(
        self, hostile: tuple[HostileRegistryStandIn, RegistryClient]
    ) -> None:
        server, client = hostile
        body = _manifest_bytes()
        lie = compute_digest(b"something else")
        server.routes[("GET", "/v2/evil/app/manifests/v1")] = StandInResponse(
            headers={"Content-Type": media.OCI_MANIFEST, "Docker-Content-Digest": lie}, body=body
        )
        await _expect("registry.digest_mismatch", client.get_manifest(self._ref(server)))

    async def test_wrong_blob_content(
        self, hostile: tuple[HostileRegistryStandIn, RegistryClient]
    ) -> None:
        server, client = hostile
        digest = compute_digest(b"the real blob")
        server.routes[("GET", f"/v2/evil/app/blobs/{digest}")] = StandInResponse(body=b"forged")
        await _expect("registry.digest_mismatch", client.get_blob(self._ref(server), digest))

    async def test_truncated_body(
        self, hostile: tuple[HostileRegistryStandIn, RegistryClient]
    ) -> None:
        server, client = hostile
        server.routes[("GET", "/v2/evil/app/manifests/v1")] = StandInResponse(
            headers={"Content-Type": media.OCI_MANIFEST}, body=_manifest_bytes(), truncate_to=20
        )
        await _expect("registry.truncated", client.get_manifest(self._ref(server)))

    @pytest.mark.parametrize("no_length", [False, True])
    async def test_oversized_manifest(
        self, hostile: tuple[HostileRegistryStandIn, RegistryClient], no_length: bool
    ) -> None:
        server, client = hostile
        big = _manifest_bytes(annotations={"pad": "x" * 100_000})
        server.routes[("GET", "/v2/evil/app/manifests/v1")] = StandInResponse(
            headers={"Content-Type": media.OCI_MANIFEST}, body=big, no_length=no_length
        )
        error = await _expect("registry.too_large", client.get_manifest(self._ref(server)))
        assert "4096" in error.message

    async def test_compressed_bomb_is_cut_at_the_limit(
        self, hostile: tuple[HostileRegistryStandIn, RegistryClient]
    ) -> None:
        server, client = hostile
        bomb = gzip.compress(b"{" + b" " * 10_000_000 + b"}")
        server.routes[("GET", "/v2/evil/app/manifests/v1")] = StandInResponse(
            headers={"Content-Type": media.OCI_MANIFEST, "Content-Encoding": "gzip"}, body=bomb
        )
        await _expect("registry.too_large", client.get_manifest(self._ref(server)))

    async def test_oversized_token_answer(
        self, hostile: tuple[HostileRegistryStandIn, RegistryClient]
    ) -> None:
        server, client = hostile
        server.routes[("GET", "/v2/evil/app/manifests/v1")] = StandInResponse(
            status=401,
            headers={"WWW-Authenticate": f'Bearer realm="{server.url}/token",service="s"'},
        )
        server.routes[("GET", "/token")] = StandInResponse(body=b"x" * (2 * 1024 * 1024))
        error = await _expect("registry.too_large", client.get_manifest(self._ref(server)))
        assert "token endpoint" in error.message

    @pytest.mark.parametrize(
        ("body", "problem"),
        [
            (b"{not json", "not valid JSON"),
            (b"[1, 2]", "not an object"),
            (b'{"schemaVersion": 1, "name": "x"}', "schemaVersion 1"),
            (b'{"schemaVersion": 2, "mediaType": "text/html"}', "unsupported media type"),
            (
                json.dumps(
                    {
                        "schemaVersion": 2,
                        "mediaType": media.OCI_MANIFEST,
                        "config": {"mediaType": "x", "digest": "sha256:00", "size": 1},
                        "layers": [],
                    }
                ).encode(),
                "config",
            ),
            (
                json.dumps(
                    {
                        "schemaVersion": 2,
                        "mediaType": media.OCI_INDEX,
                        "manifests": [
                            {
                                "mediaType": media.OCI_MANIFEST,
                                "digest": compute_digest(b""),
                                "size": -1,
                            }
                        ],
                    }
                ).encode(),
                "valid size",
            ),
            (
                json.dumps(
                    {
                        "schemaVersion": 2,
                        "mediaType": media.OCI_INDEX,
                        "manifests": [],
                        "layers": "not a list",
                    }
                ).encode(),
                "layers is not a list",
            ),
            (_manifest_bytes(annotations={"n": 1}), "annotations are not string pairs"),
            (_manifest_bytes(artifactType=["x"]), "artifactType is not a string"),
        ],
    )
    async def test_invalid_manifests(
        self, hostile: tuple[HostileRegistryStandIn, RegistryClient], body: bytes, problem: str
    ) -> None:
        server, client = hostile
        server.routes[("GET", "/v2/evil/app/manifests/v1")] = StandInResponse(
            headers={"Content-Type": media.OCI_MANIFEST}, body=body
        )
        error = await _expect("registry.invalid_manifest", client.get_manifest(self._ref(server)))
        assert problem in error.message

    @pytest.mark.parametrize(
        ("status", "code", "attempts"),
        [
            (401, "registry.unauthorized", 1),
            (403, "registry.forbidden", 1),
            (404, "registry.not_found", 1),
            (500, "registry.server_error", 1),
            (502, "registry.server_error", 3),
            (503, "registry.server_error", 3),
            (504, "registry.server_error", 3),
            (429, "registry.rate_limited", 3),
        ],
    )
    async def test_error_statuses_and_retries(
        self,
        hostile: tuple[HostileRegistryStandIn, RegistryClient],
        status: int,
        code: str,
        attempts: int,
    ) -> None:
        server, client = hostile
        server.routes[("GET", "/v2/evil/app/manifests/v1")] = StandInResponse.json(
            {"errors": [{"code": "SOMETHING", "message": "the registry says no"}]},
            status=status,
            **({"Retry-After": "0"} if status == 429 else {}),
        )
        error = await _expect(code, client.get_manifest(self._ref(server)))
        assert "the registry says no" in error.message
        assert server.host in error.message and "evil/app" in error.message
        assert len(server.requests) == attempts

    async def test_long_retry_after_is_not_waited_for(
        self, hostile: tuple[HostileRegistryStandIn, RegistryClient]
    ) -> None:
        server, client = hostile
        server.routes[("GET", "/v2/evil/app/manifests/v1")] = StandInResponse(
            status=429, headers={"Retry-After": "3600"}
        )
        await _expect("registry.rate_limited", client.get_manifest(self._ref(server)))
        assert len(server.requests) == 1

    async def test_writes_are_not_retried(
        self, hostile: tuple[HostileRegistryStandIn, RegistryClient]
    ) -> None:
        server, client = hostile
        server.routes[("POST", "/v2/evil/app/blobs/uploads/")] = StandInResponse(status=503)
        await _expect(
            "registry.server_error",
            client.push_blob(self._ref(server), b"data", media_type=media.OCI_LAYER),
        )
        assert [m for m, _ in server.requests].count("POST") == 1

    async def test_silent_registry_reads_like_a_closed_port(
        self, hostile: tuple[HostileRegistryStandIn, RegistryClient]
    ) -> None:
        # Connected, then nothing within the request time-out: no answer at all, the same
        # error as a closed port (otherwise the difference maps which ports are open).
        server, client = hostile
        server.routes[("GET", "/v2/evil/app/manifests/v1")] = StandInResponse(delay=30)
        error = await _expect("registry.unreachable", client.get_manifest(self._ref(server)))
        assert error.message.endswith(": the registry could not be reached")

    async def test_total_deadline_bounds_retries(
        self, hostile_registry: HostileRegistryStandIn, registry: RegistryProcess
    ) -> None:
        async with registry_client(
            registry,
            registry_request_timeout=2.0,
            registry_total_timeout=1.0,
            registry_retries=10,
        ) as client:
            hostile_registry.routes[("GET", "/v2/evil/app/manifests/v1")] = StandInResponse(
                status=503, delay=0.3
            )
            error = await _expect(
                "registry.timeout", client.get_manifest(self._ref(hostile_registry))
            )
            assert "did not finish within 1 s" in error.message

    async def test_endless_referrer_pages_stop_at_the_cap(
        self, hostile: tuple[HostileRegistryStandIn, RegistryClient]
    ) -> None:
        server, client = hostile
        subject = compute_digest(b"subject")
        path = f"/v2/evil/app/referrers/{subject}"

        def page(request: StandInRequest) -> StandInResponse:
            n = int(request.query.get("page", ["0"])[0])
            entries = [
                {
                    "mediaType": media.OCI_MANIFEST,
                    "digest": compute_digest(f"{n}-{i}".encode()),
                    "size": 1,
                    "artifactType": ARTIFACT,
                }
                for i in range(10)
            ]
            body = {"schemaVersion": 2, "mediaType": media.OCI_INDEX, "manifests": entries}
            return StandInResponse(
                headers={
                    "Content-Type": media.OCI_INDEX,
                    "Link": f'<{path}?page={n + 1}>; rel="next"',
                },
                body=json.dumps(body).encode(),
            )

        server.routes[("GET", path)] = page
        listed = await client.list_referrers(self._ref(server, subject))
        assert len(listed) == 128
        assert len(server.requests) == 13  # pages of 10: the thirteenth reaches the cap

    async def test_endless_link_chain_of_repeats_stops_at_the_page_cap(
        self,
        hostile: tuple[HostileRegistryStandIn, RegistryClient],
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        # Every page repeats one referrer and links to itself with a new query: neither the
        # referrers cap nor the loop check ever stops it, only the page cap (default 16).
        server, client = hostile
        subject = compute_digest(b"subject")
        path = f"/v2/evil/app/referrers/{subject}"
        entry = {"mediaType": media.OCI_MANIFEST, "digest": subject, "size": 1}

        def page(request: StandInRequest) -> StandInResponse:
            n = int(request.query.get("n", ["0"])[0])
            body = {"schemaVersion": 2, "mediaType": media.OCI_INDEX, "manifests": [entry]}
            return StandInResponse(
                headers={
                    "Content-Type": media.OCI_INDEX,
                    "Link": f'<{path}?n={n + 1}>; rel="next"',
                },
                body=json.dumps(body).encode(),
            )

        server.routes[("GET", path)] = page
        listed = await client.list_referrers(self._ref(server, subject))
        assert [d.digest for d in listed] == [subject]
        assert len(server.requests) == 16
        assert "span more than 16 pages" in caplog.text

    async def test_referrer_link_to_another_host_is_refused(
        self, hostile: tuple[HostileRegistryStandIn, RegistryClient]
    ) -> None:
        server, client = hostile
        subject = compute_digest(b"subject")
        server.routes[("GET", f"/v2/evil/app/referrers/{subject}")] = StandInResponse(
            headers={
                "Content-Type": media.OCI_INDEX,
                "Link": '<https://elsewhere.example/v2/x>; rel="next"',
            },
            body=json.dumps(
                {
                    "schemaVersion": 2,
                    "mediaType": media.OCI_INDEX,
                    "manifests": [{"mediaType": media.OCI_MANIFEST, "digest": subject, "size": 1}],
                }
            ).encode(),
        )
        error = await _expect(
            "registry.protocol", client.list_referrers(self._ref(server, subject))
        )
        assert "another host" in error.message

    async def test_invalid_fallback_tag_means_no_referrers(
        self,
        hostile: tuple[HostileRegistryStandIn, RegistryClient],
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        server, client = hostile
        subject = compute_digest(b"subject")
        server.routes[("GET", f"/v2/evil/app/manifests/{fallback_tag(subject)}")] = StandInResponse(
            headers={"Content-Type": media.OCI_INDEX}, body=b"<html>oops"
        )
        assert await client.list_referrers(self._ref(server, subject)) == []
        assert "ignoring the referrers fallback tag" in caplog.text

    async def test_upload_location_to_another_host_is_refused(
        self, hostile: tuple[HostileRegistryStandIn, RegistryClient]
    ) -> None:
        server, client = hostile
        server.routes[("POST", "/v2/evil/app/blobs/uploads/")] = StandInResponse(
            status=202, headers={"Location": "http://collector.example/upload/1"}
        )
        error = await _expect(
            "registry.protocol",
            client.push_blob(self._ref(server), b"secret layer", media_type=media.OCI_LAYER),
        )
        assert "another host" in error.message


class TestConcurrentUploads:
    async def test_one_upload_per_blob_under_concurrency(
        self, referrers_api_standin: ReferrersApiStandIn, oci_client: RegistryClient
    ) -> None:
        # The stand-in proxies the real registry and records what reaches it.
        ref = ImageRef.parse(f"{referrers_api_standin.host}/up/app")
        pushed = await asyncio.gather(
            *(oci_client.push_blob(ref, b"shared", media_type=media.OCI_LAYER) for _ in range(16))
        )
        assert len({d.digest for d in pushed}) == 1
        posts = [p for m, p in referrers_api_standin.requests if m == "POST"]
        assert posts == ["/v2/up/app/blobs/uploads/"]
        assert await oci_client.get_blob(ref, pushed[0].digest) == b"shared"


class TestFallbackIndexRace:
    """A second writer overwrites the fallback tag right after us: we must notice and re-add."""

    async def _setup(
        self, stand_in: LostUpdateStandIn, client: RegistryClient
    ) -> tuple[ImageRef, Descriptor]:
        ref, image = await push_random_image(client, f"{stand_in.host}/race/app")
        # The other writer's referrer: a real manifest, pushed without touching the tag.
        await client.push_blob(ref, media.EMPTY_CONFIG_DATA, media_type=media.OCI_EMPTY)
        other = await client.push_manifest(
            ref,
            {
                "schemaVersion": 2,
                "mediaType": media.OCI_MANIFEST,
                "artifactType": OTHER,
                "config": media.EMPTY_CONFIG.to_json(),
                "layers": [],
                "subject": image.descriptor.to_json(),
            },
            media_type=media.OCI_MANIFEST,
        )
        stand_in.other_entry = other.to_json()
        return ref, other

    async def test_lost_update_is_detected_and_repaired(
        self, lost_update_standin: LostUpdateStandIn, oci_client: RegistryClient
    ) -> None:
        ref, other = await self._setup(lost_update_standin, oci_client)
        lost_update_standin.clobbers = 2
        # A writer outside Sealgate's lock is expected: confirm each write after a pause.
        oci_client.fallback_settle_seconds = 0.01
        ours = await oci_client.push_referrer(
            ref, artifact_type=ARTIFACT, layers=[(b"{}", "application/json", {})], annotations={}
        )
        listed = await oci_client.list_referrers(ref)
        assert sorted(d.digest for d in listed) == sorted([ours.digest, other.digest])
        assert lost_update_standin.fallback_writes == 3  # two clobbered, the third kept

    async def test_a_writer_that_never_settles_is_a_conflict(
        self, lost_update_standin: LostUpdateStandIn, oci_client: RegistryClient
    ) -> None:
        ref, _ = await self._setup(lost_update_standin, oci_client)
        lost_update_standin.clobbers = 1000
        oci_client.fallback_settle_seconds = 0.01
        with pytest.raises(RegistryError) as caught:
            await oci_client.push_referrer(
                ref,
                artifact_type=ARTIFACT,
                layers=[(b"[]", "application/json", {})],
                annotations={},
            )
        assert caught.value.code == "registry.conflict"
        assert lost_update_standin.fallback_writes == RegistryClient.fallback_attempts

    async def test_without_a_settle_delay_the_write_is_not_reread(
        self, lost_update_standin: LostUpdateStandIn, oci_client: RegistryClient
    ) -> None:
        # The default: no writer outside Sealgate's lock is expected, so one write stands
        # and is not re-read (a foreign writer clobbering it goes unnoticed, as documented).
        ref, _ = await self._setup(lost_update_standin, oci_client)
        lost_update_standin.clobbers = 1
        assert oci_client.fallback_settle_seconds == 0
        await oci_client.push_referrer(
            ref, artifact_type=ARTIFACT, layers=[(b"{}", "application/json", {})], annotations={}
        )
        assert lost_update_standin.fallback_writes == 1
