"""``RegistryTransport``: which registries may be spoken to over plain HTTP."""

from __future__ import annotations

import httpx
import pytest

from app.config import load_settings
from app.oci.refs import ImageRef
from app.oci.transport import RegistryTransport

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
