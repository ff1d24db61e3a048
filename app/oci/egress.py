"""Where the registry client may connect, and what a caller learns when it cannot.

An image reference names its registry, and whoever can ask for a verification, a decision or
(later) an admission chooses the reference. So every request of ``RegistryTransport`` first
passes ``Egress.admit``:

- the registry must match ``settings.registry_allowlist`` (``host[:port]`` globs where ``*``
  stands for any characters; a pattern without ``:port`` matches references without a port,
  ``:*`` any port or none; Docker Hub is ``docker.io``). An empty list allows any registry;
- a registry written as a link-local or cloud metadata address (169.254.0.0/16, fe80::/10,
  fd00:ec2::254, and those IPv4 addresses inside IPv4-mapped, IPv4-compatible, 6to4 and NAT64
  IPv6 forms) is refused unless ``settings.registry_allow_link_local``.

Both raise ``registry.not_allowed`` before anything is sent. Names are checked again when a
connection is opened: ``EgressBackend``, the client's network backend, resolves the name itself,
refuses it when any address it resolves to is forbidden, and connects to the address it checked
(never to a second resolution, so re-binding the name in between gains nothing). That covers
every connection the client opens: registries, token realms and redirect targets.

``unanswered`` is the one error for a request that got no HTTP answer at all: refused, reset,
timed out while connecting, unresolvable or closed before answering all read "could not be
reached" (``registry.unreachable``), so that answers cannot tell a caller which ports are open.
The cause goes to the log only.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import re
import select
import socket
import ssl
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import httpcore

from app.errors import RegistryError
from app.oci import errors
from app.oci.errors import registry_error
from app.oci.refs import ImageRef

log = logging.getLogger(__name__)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_LINK_LOCAL_V4 = ipaddress.ip_network("169.254.0.0/16")
_LINK_LOCAL_V6 = ipaddress.ip_network("fe80::/10")
_METADATA_V6 = ipaddress.ip_address("fd00:ec2::254")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_FORBIDDEN_WHY = "a link-local or cloud metadata address"
_LINK_LOCAL_HINT = "set SEALGATE_REGISTRY_ALLOW_LINK_LOCAL=true only if that is intended"


def split_host_port(text: str) -> tuple[str, str | None]:
    """``host[:port]`` as ``(host, port)``; an IPv6 host keeps its brackets."""
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            return text, None
        rest = text[end + 1 :]
        return text[: end + 1], rest[1:] if rest.startswith(":") else None
    host, colon, port = text.rpartition(":")
    return (host, port) if colon else (text, None)


def literal_address(host: str) -> IPAddress | None:
    """The address ``host`` spells (``10.0.0.1``, ``[::1]``, ``::1``), or None for a name."""
    try:
        return ipaddress.ip_address(host.removeprefix("[").removesuffix("]"))
    except ValueError:
        return None


def forbidden_address(address: IPAddress) -> bool:
    """Whether ``address`` is link-local or a cloud metadata address, also inside IPv6."""
    if isinstance(address, ipaddress.IPv6Address):
        if address == _METADATA_V6 or address in _LINK_LOCAL_V6:
            return True
        embedded = _embedded_ipv4(address)
        if embedded is None:
            return False
        return embedded in _LINK_LOCAL_V4
    return address in _LINK_LOCAL_V4


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64 or int(address) >> 32 == 0:  # NAT64, or IPv4-compatible ::a.b.c.d
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


@dataclass(frozen=True)
class HostPattern:
    """One ``SEALGATE_REGISTRY_ALLOWLIST`` entry: a host glob and an optional port."""

    host: re.Pattern[str]
    port: str | None  # None: the reference has no port; "*": any port or none

    @classmethod
    def parse(cls, text: str) -> HostPattern:
        host, port = split_host_port(text.lower())
        glob = ".*".join(re.escape(part) for part in host.split("*"))
        return cls(host=re.compile(glob), port=port)

    def matches(self, registry: str) -> bool:
        host, port = split_host_port(registry.lower())
        if not self.host.fullmatch(host):
            return False
        return self.port == "*" or self.port == port


class Egress:
    """The registry allow-list and the address check, for one ``RegistryTransport``."""

    def __init__(self, *, allowlist: Sequence[str], allow_link_local: bool) -> None:
        """``allowlist``: ``SEALGATE_REGISTRY_ALLOWLIST`` (empty: any registry);
        ``allow_link_local``: ``SEALGATE_REGISTRY_ALLOW_LINK_LOCAL``."""
        self._patterns = [HostPattern.parse(p) for p in allowlist]
        self.allow_link_local = allow_link_local
        # Registries already admitted: the answer depends on the name and the settings only,
        # and is asked for every request.
        self._admitted: set[str] = set()

    def admit(self, ref: ImageRef) -> None:
        """Raise ``registry.not_allowed`` unless ``ref``'s registry may be contacted."""
        if ref.registry in self._admitted:
            return
        if self._patterns and not any(p.matches(ref.registry) for p in self._patterns):
            raise registry_error(
                errors.NOT_ALLOWED,
                ref=ref,
                problem="the registry is not allowed (it matches no SEALGATE_REGISTRY_ALLOWLIST "
                "entry); nothing was sent to it",
            )
        address = literal_address(split_host_port(ref.registry)[0])
        if address is not None and not self.allow_link_local and forbidden_address(address):
            raise registry_error(
                errors.NOT_ALLOWED,
                ref=ref,
                problem=f"the registry is not allowed: it is {_FORBIDDEN_WHY} "
                f"({_LINK_LOCAL_HINT}); nothing was sent to it",
            )
        self._admitted.add(ref.registry)

    def network_backend(self) -> httpcore.AsyncNetworkBackend:
        """The backend that checks each address before connecting to it."""
        return EgressBackend(allow_link_local=self.allow_link_local)


class AddressRefused(RegistryError):
    """A host resolved to a forbidden address when a connection was about to be opened."""

    def __init__(self, host: str) -> None:
        self.host = host
        super().__init__(
            f"registry host {host} is not allowed: it resolves to {_FORBIDDEN_WHY} "
            f"({_LINK_LOCAL_HINT})",
            code=errors.NOT_ALLOWED,
            details={"registry": host},
        )


async def resolve(host: str, port: int) -> list[IPAddress]:
    """The addresses ``host`` resolves to, in the resolver's order (a literal is itself)."""
    literal = literal_address(host)
    if literal is not None:
        return [literal]
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    found: list[IPAddress] = []
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if address not in found:
            found.append(address)
    return found


class EgressBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend with the address check of the module doc at connect time."""

    def __init__(self, *, allow_link_local: bool) -> None:
        self._inner = httpcore.AnyIOBackend()
        self._allow_link_local = allow_link_local

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            async with asyncio.timeout(timeout):
                addresses = await resolve(host, port)
        except TimeoutError as e:
            raise httpcore.ConnectTimeout(f"resolving {host} timed out") from e
        except OSError as e:
            raise httpcore.ConnectError(f"cannot resolve {host}: {e}") from e
        refused = [a for a in addresses if forbidden_address(a)]
        if refused and not self._allow_link_local:
            log.warning(
                "refused to connect to a forbidden address",
                extra={"host": host, "port": port, "addresses": [str(a) for a in refused]},
            )
            raise AddressRefused(host)
        failure: Exception = httpcore.ConnectError(f"{host} resolved to no address")
        for address in addresses:
            try:
                # The checked address itself, never the name: no second resolution to re-bind.
                return _PooledStream(
                    await self._inner.connect_tcp(
                        str(address),
                        port,
                        timeout=timeout,
                        local_address=local_address,
                        socket_options=socket_options,
                    )
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as e:
                failure = e
        raise failure

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class _PooledStream(httpcore.AsyncNetworkStream):
    """httpcore's stream with a cheap answer to "has the server closed this idle connection?".

    httpcore's pool asks that of every idle connection each time a request starts or ends;
    AnyIO answers by building the socket's whole attribute table (a ``getpeername`` system
    call and a dict of closures) to find the socket, which was about a sixth of a whole
    image copy's CPU with a dozen connections kept alive. The socket is found once here;
    the check is the one httpcore makes (readable when idle: closed, or bytes nobody asked
    for).
    """

    def __init__(self, inner: httpcore.AsyncNetworkStream) -> None:
        self._inner = inner
        self._socket = inner.get_extra_info("socket")

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return await self._inner.read(max_bytes, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        await self._inner.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        return _PooledStream(await self._inner.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable" and self._socket is not None:
            if self._socket.fileno() < 0:
                return True  # closed under us: the next read returns the end
            poller = select.poll()
            poller.register(self._socket, select.POLLIN)
            return bool(poller.poll(0))
        return self._inner.get_extra_info(info)


def unanswered(error: Exception, *, ref: ImageRef, target: str | None = None) -> RegistryError:
    """The error for a request that got no HTTP answer; the cause is logged, not shown.

    ``target`` names who was asked when it is not the registry itself ("token endpoint H",
    "redirect target H"). A forbidden address is ``registry.not_allowed``; anything else
    (refused, reset, connect time-out, DNS, TLS handshake, closed early) ``registry.unreachable``.
    """
    who = target or "the registry"
    if isinstance(error, AddressRefused):
        return registry_error(
            errors.NOT_ALLOWED,
            ref=ref,
            problem=f"{who} is not allowed: it resolves to {_FORBIDDEN_WHY} ({_LINK_LOCAL_HINT})",
        )
    log.warning(
        "registry could not be reached",
        extra={
            "registry": ref.registry,
            "target": who,
            "cause": f"{type(error).__name__}: {error}",
        },
    )
    return registry_error(errors.UNREACHABLE, ref=ref, problem=f"{who} could not be reached")
