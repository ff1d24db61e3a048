"""``RegistryTransport``: which registries may be spoken to over plain HTTP, and connections
kept for the next request."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from app.config import load_settings
from app.oci import egress, media
from app.oci.descriptor import Descriptor
from app.oci.refs import ImageRef
from app.oci.transport import RegistryTransport
from tests.fixtures.images import registry_client
from tests.fixtures.registry import RegistryProcess

# Names that start like ``localhost`` but are other hosts, which anyone may register.
LOCALHOST_LOOKALIKES = [
    "localhost.evil.example",
    "localhost.evil.example:5000",
    "LOCALHOST.evil.example:443",
    "localhostx:5000",
    "localhost-registry:5000",
]


class TestPlainHttpToLocalhostLookalikes:
    """``localhost`` is matched by equality: a name that merely starts with it is a
    remote host, which gets HTTPS only, however it answers."""

    @pytest.mark.parametrize("host", LOCALHOST_LOOKALIKES)
    async def test_lookalike_gets_https_and_no_plain_http_probe(self, host: str) -> None:
        """Fails if ``name.lower() == "localhost"`` in app/oci/transport.py
        (``plain_http_allowed``) is turned into a prefix match (``startswith``).

        The network is a stand-in that records what is asked and answers nothing (as an
        unreachable host would, which is when a plain-HTTP host falls back to HTTP); it
        never sees a request because the scheme is decided without asking.
        """
        asked: list[httpx.Request] = []

        def unreachable_network_standin(request: httpx.Request) -> httpx.Response:
            asked.append(request)
            raise httpx.ConnectError("unreachable (stand-in)", request=request)

        transport = RegistryTransport(
            settings=load_settings(docker_config=None),
            transport=httpx.MockTransport(unreachable_network_standin),
        )
        try:
            url = await transport.url(ImageRef.parse(f"{host}/team/app:v1"), "manifests/v1")
            allowed = transport.plain_http_allowed(host)
        finally:
            await transport.aclose()
        assert url.scheme == "https"
        assert asked == []
        assert allowed is False

    async def test_localhost_itself_still_may_use_plain_http(self) -> None:
        transport = RegistryTransport(settings=load_settings(docker_config=None))
        try:
            assert transport.plain_http_allowed("localhost:5000")
            assert transport.plain_http_allowed("LocalHost")
        finally:
            await transport.aclose()


class TestConnectionReuse:
    """One connection serves request after request, whatever the method."""

    async def test_head_answers_leave_the_connection_open_for_the_next_request(
        self,
        registry: RegistryProcess,
        unique_repo: Callable[[str], str],
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """Fails if ``_exchange`` in app/oci/transport.py stops reading HEAD answers to their
        end: httpcore then closes the connection, and each HEAD costs a new one.

        Connections are counted where ``EgressBackend`` opens them: it resolves the host
        once for each new connection."""
        opened = 0
        real_resolve = egress.resolve

        async def counting_resolve(host: str, port: int) -> list[egress.IPAddress]:
            nonlocal opened
            opened += 1
            return await real_resolve(host, port)

        monkeypatch.setattr(egress, "resolve", counting_resolve)
        absent = Descriptor(media_type=media.OCI_LAYER_GZIP, digest="sha256:" + "0" * 64, size=1)
        async with registry_client(registry) as client:
            ref = ImageRef.parse(unique_repo("app"))
            assert not await client.has_blob(ref, absent)  # opens the connection
            first = opened
            for _ in range(10):
                assert not await client.has_blob(ref, absent)  # a HEAD answered 404 each
                assert not await client.has_manifest(ref.with_digest(absent.digest))

        assert first >= 1
        assert opened == first
