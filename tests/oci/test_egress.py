"""Where the registry client may connect: the allow-list, link-local and metadata addresses, and
one error for every host that could not be reached.

Registries are the real ``docker-registry`` and ``HostileRegistryStandIn``; names are served by
``ResolverStandIn`` (so nothing leaves the machine); ports that are not registries are
``MisbehavingPortStandIn``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from app.config import Settings, load_settings
from app.enforce.deadline import Deadline
from app.enforce.outcome import DecisionRequest
from app.enforce.pipeline import decide
from app.errors import ConfigError, RegistryError
from app.oci import media
from app.oci.client import RegistryClient
from app.oci.digests import compute_digest
from app.oci.egress import Egress, HostPattern, forbidden_address
from app.oci.refs import ImageRef
from app.policy.input import Entrypoint
from app.services import Services
from tests.conftest import TEST_KEK
from tests.fixtures.images import push_random_image, registry_client
from tests.fixtures.registry import RegistryProcess, free_port
from tests.fixtures.standins import (
    HostileRegistryStandIn,
    MisbehavingPortStandIn,
    ResolverStandIn,
    StandInResponse,
)

SUBJECT = compute_digest(b"subject")


async def _expect(code: str, awaitable: Awaitable[Any]) -> RegistryError:
    with pytest.raises(RegistryError) as caught:
        await awaitable
    assert caught.value.code == code, caught.value.message
    return caught.value


# Every kind of registry call a caller can cause, on one reference.
OPERATIONS: dict[str, Callable[[RegistryClient, ImageRef], Awaitable[Any]]] = {
    "resolve": lambda c, r: c.resolve_digest(r),
    "manifest": lambda c, r: c.get_manifest(r),
    "blob": lambda c, r: c.get_blob(r, SUBJECT),
    "referrers": lambda c, r: c.list_referrers(r.with_digest(SUBJECT)),
    "push blob": lambda c, r: c.push_blob(r, b"x", media_type=media.OCI_LAYER),
    "push referrer": lambda c, r: c.push_referrer(
        r.with_digest(SUBJECT), artifact_type="a/b", layers=[], annotations={}
    ),
}


class TestAllowList:
    @pytest.mark.parametrize(
        ("pattern", "registry", "matches"),
        [
            ("registry.corp", "registry.corp", True),
            ("registry.corp", "REGISTRY.corp", True),
            ("registry.corp", "registry.corp:5000", False),
            ("registry.corp", "evilregistry.corp", False),
            ("*.corp:5000", "a.b.corp:5000", True),
            ("*.corp:5000", "a.corp:5001", False),
            ("*.corp:5000", "corp:5000", False),
            ("*.corp:5000", "a.corp.evil:5000", False),
            ("127.0.0.1:*", "127.0.0.1:5000", True),
            ("127.0.0.1:*", "127.0.0.1", True),
            ("127.0.0.1:*", "127.0.0.10:5000", False),
            ("[::1]:*", "[::1]:5000", True),
            ("docker.io", "docker.io", True),
        ],
    )
    def test_host_globs(self, pattern: str, registry: str, matches: bool) -> None:
        assert HostPattern.parse(pattern).matches(registry) is matches

    @pytest.mark.parametrize("value", ["https://registry.corp", "registry.corp/team", "a b"])
    def test_setting_refuses_what_is_not_a_host_glob(self, value: str) -> None:
        with pytest.raises(ConfigError) as caught:
            load_settings(registry_allowlist=value)
        assert "SEALGATE_REGISTRY_ALLOWLIST" in caught.value.message

    def test_setting_from_the_environment(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("SEALGATE_REGISTRY_ALLOWLIST", "Registry.corp, *.corp:5000")
        assert Settings().registry_allowlist == ["registry.corp", "*.corp:5000"]

    @pytest.mark.parametrize("operation", list(OPERATIONS))
    async def test_outside_the_list_nothing_is_contacted(
        self, hostile_registry: HostileRegistryStandIn, registry: RegistryProcess, operation: str
    ) -> None:
        hostile_registry.routes[("GET", "/v2/")] = StandInResponse()
        async with registry_client(
            registry, registry_allowlist=["registry.corp", "*.corp:5000"]
        ) as client:
            ref = ImageRef.parse(f"{hostile_registry.host}/evil/app:v1")
            error = await _expect("registry.not_allowed", OPERATIONS[operation](client, ref))
        assert f"registry {hostile_registry.host}" in error.message
        assert "is not allowed" in error.message
        assert error.http_status == 403
        assert hostile_registry.requests == []

    async def test_listed_registry_is_reached(self, registry: RegistryProcess) -> None:
        async with registry_client(registry, registry_allowlist=["127.0.0.1:*"]) as client:
            ref, manifest = await push_random_image(client, f"{registry.host}/allow/app")
            assert await client.resolve_digest(ImageRef.parse(f"{ref.name}:v1")) == manifest.digest


class TestLinkLocalAndMetadata:
    @pytest.mark.parametrize(
        ("address", "forbidden"),
        [
            ("169.254.169.254", True),
            ("169.254.0.1", True),
            ("fe80::1", True),
            ("febf::1", True),
            ("fd00:ec2::254", True),
            ("::ffff:169.254.169.254", True),
            ("::169.254.169.254", True),
            ("64:ff9b::a9fe:a9fe", True),
            ("2002:a9fe:a9fe::1", True),
            ("127.0.0.1", False),
            ("10.0.0.1", False),
            ("::1", False),
            ("fd00:ec2::253", False),
            ("fec0::1", False),
        ],
    )
    def test_forbidden_addresses(self, address: str, forbidden: bool) -> None:
        assert forbidden_address(ipaddress.ip_address(address)) is forbidden

    @pytest.mark.parametrize(
        "literal",
        [
            "169.254.169.254",
            "169.254.169.254:80",
            "[fe80::1]:5000",
            "[fd00:ec2::254]",
            "[::ffff:a9fe:a9fe]:8080",
        ],
    )
    async def test_literal_addresses_are_refused_even_when_listed(
        self, registry: RegistryProcess, literal: str
    ) -> None:
        async with registry_client(
            registry, registry_allowlist=[literal, "*:*"], registry_request_timeout=0.5
        ) as client:
            error = await _expect(
                "registry.not_allowed",
                client.get_manifest(ImageRef.parse(f"{literal}/meta/data:v1")),
            )
        assert "link-local or cloud metadata" in error.message
        assert "SEALGATE_REGISTRY_ALLOW_LINK_LOCAL" in error.message

    def test_the_setting_lets_literal_addresses_through(self) -> None:
        ref = ImageRef.parse("169.254.169.254/meta/data:v1")
        Egress(allowlist=[], allow_link_local=True).admit(ref)
        with pytest.raises(RegistryError):
            Egress(allowlist=[], allow_link_local=False).admit(ref)

    async def test_a_name_is_checked_on_the_address_connected_to(
        self, registry: RegistryProcess, resolver_standin: ResolverStandIn
    ) -> None:
        # The name resolves only through the stand-in: the request reaching the registry
        # shows that the client connects to the address it checked, not to a new lookup.
        port = registry.host.rsplit(":", 1)[1]
        name = f"rebind.standin.test:{port}"
        resolver_standin.names["rebind.standin.test"] = ["127.0.0.1"]
        async with registry_client(registry, insecure_registries=[name]) as client:
            ref, manifest = await push_random_image(client, f"{name}/rebind/app")
            assert (await client.get_manifest(ref)).digest == manifest.digest
        assert resolver_standin.answers["rebind.standin.test"] >= 1

        # Re-bound to the metadata address: the next connection is refused before it opens.
        resolver_standin.names["rebind.standin.test"] = ["169.254.169.254"]
        async with registry_client(
            registry, insecure_registries=[name], registry_request_timeout=0.5
        ) as client:
            error = await _expect("registry.not_allowed", client.get_manifest(ref))
        assert "resolves to a link-local or cloud metadata address" in error.message
        assert "169.254" not in error.message

    async def test_a_name_with_any_forbidden_address_is_refused(
        self, registry: RegistryProcess, resolver_standin: ResolverStandIn
    ) -> None:
        port = registry.host.rsplit(":", 1)[1]
        resolver_standin.names["mixed.standin.test"] = ["127.0.0.1", "fe80::1"]
        async with registry_client(
            registry, insecure_registries=[f"mixed.standin.test:{port}"]
        ) as client:
            await _expect(
                "registry.not_allowed",
                client.resolve_digest(ImageRef.parse(f"mixed.standin.test:{port}/m/app:v1")),
            )

    async def test_a_token_realm_on_a_metadata_address_is_refused(
        self,
        hostile_registry: HostileRegistryStandIn,
        registry: RegistryProcess,
        resolver_standin: ResolverStandIn,
    ) -> None:
        resolver_standin.names["realm.standin.test"] = ["169.254.169.254"]
        hostile_registry.routes[("GET", "/v2/evil/app/manifests/v1")] = StandInResponse(
            status=401,
            headers={"WWW-Authenticate": 'Bearer realm="https://realm.standin.test/token"'},
        )
        async with registry_client(registry, registry_request_timeout=0.5) as client:
            error = await _expect(
                "registry.not_allowed",
                client.get_manifest(ImageRef.parse(f"{hostile_registry.host}/evil/app:v1")),
            )
        assert "token endpoint realm.standin.test" in error.message


class TestUniformUnreachable:
    """Refused, reset, closed, another protocol, connect time-out, no such name: one answer."""

    @pytest.mark.parametrize("mode", ["closed", "reset", "close", "banner", "backlog", "dns"])
    async def test_every_way_of_not_answering_reads_the_same(
        self,
        registry: RegistryProcess,
        resolver_standin: ResolverStandIn,
        caplog: pytest.LogCaptureFixture,
        mode: str,
    ) -> None:
        async with registry_client(
            registry, registry_request_timeout=0.5, registry_retries=0
        ) as client:
            if mode == "closed":
                host = f"127.0.0.1:{free_port()}"
                error = await _expect("registry.unreachable", self._probe(client, host))
            elif mode == "dns":
                host = "nowhere.standin.test:5000"
                error = await _expect("registry.unreachable", self._probe(client, host))
            else:
                with MisbehavingPortStandIn(mode) as port:
                    host = port.host
                    error = await _expect("registry.unreachable", self._probe(client, host))
        assert error.message == (
            f"registry {host}, repository probe/app: the registry could not be reached"
        )
        assert error.http_status == 502
        causes = [getattr(r, "cause", None) for r in caplog.records]
        assert any(causes), "the cause is logged"

    async def test_an_unreachable_token_realm_reads_the_same(
        self, hostile_registry: HostileRegistryStandIn, registry: RegistryProcess
    ) -> None:
        realm_host = f"127.0.0.1:{free_port()}"
        hostile_registry.routes[("GET", "/v2/evil/app/manifests/v1")] = StandInResponse(
            status=401,
            headers={"WWW-Authenticate": f'Bearer realm="http://{realm_host}/token"'},
        )
        async with registry_client(registry, registry_retries=0) as client:
            error = await _expect(
                "registry.unreachable",
                client.get_manifest(ImageRef.parse(f"{hostile_registry.host}/evil/app:v1")),
            )
        assert error.message.endswith(f": token endpoint {realm_host} could not be reached")

    @staticmethod
    def _probe(client: RegistryClient, host: str) -> Awaitable[str]:
        return client.resolve_digest(ImageRef.parse(f"{host}/probe/app:v1"))


class TestEveryCallerIsCovered:
    async def test_a_decision_on_a_registry_outside_the_list_is_a_denial(
        self,
        hostile_registry: HostileRegistryStandIn,
        test_database_url: str,
        clean_database: Any,
        registry: RegistryProcess,
    ) -> None:
        settings = load_settings(
            database_url=test_database_url,
            insecure_registries=[registry.host],
            registry_allowlist=[registry.host],
            key_encryption_key=TEST_KEK,
        )
        services = Services.from_settings(settings)
        try:
            request = DecisionRequest(
                image=f"{hostile_registry.host}/evil/app:v1",
                entrypoint=Entrypoint.admission,
                deadline=Deadline(5),
            )
            evaluation = await decide(request, services.decisions)
        finally:
            await services.aclose()
        assert not evaluation.decision.allow
        (denial,) = evaluation.decision.deny
        assert denial.code == evaluation.failure == "registry.not_allowed"
        assert "the registry is not allowed" in denial.message
        assert hostile_registry.requests == []
