"""Who may deliver a webhook: the shared secret and the optional sender allow-list.

The ``Authorization`` header must be exactly the secret, or ``Bearer <secret>``, compared
in constant time (``hmac.compare_digest``). The secret is the source's own
(``SEALGATE_HOOK_SECRET_DISTRIBUTION`` / ``_HARBOR``) where set, else ``SEALGATE_HOOK_SECRET``;
with neither, the hook refuses every request (fail closed). The allow-list is the source's
own (``SEALGATE_HOOK_ALLOWED_CIDRS_<SOURCE>``) where set, else ``SEALGATE_HOOK_ALLOWED_CIDRS``;
empty means any address. The address checked is the TCP peer's: a proxy in front must be on
the list itself (``X-Forwarded-For`` is not trusted).
"""

from __future__ import annotations

import hmac
import ipaddress

from app.config import Settings
from app.errors import ForbiddenError, HookAuthError
from app.hooks.events import EventSource


def hook_secret(settings: Settings, source: EventSource) -> str | None:
    own = getattr(settings, f"hook_secret_{source.value}")
    chosen = own if own is not None else settings.hook_secret
    return chosen.get_secret_value() if chosen is not None else None


def allowed_networks(
    settings: Settings, source: EventSource
) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    own: list[str] = getattr(settings, f"hook_allowed_cidrs_{source.value}")
    return [ipaddress.ip_network(c, strict=False) for c in (own or settings.hook_allowed_cidrs)]


def check_address(settings: Settings, source: EventSource, peer: str | None) -> None:
    """Raise ``hook.address_refused`` unless ``peer`` is on the source's allow-list (if any)."""
    networks = allowed_networks(settings, source)
    if not networks:
        return
    try:
        address = ipaddress.ip_address(peer or "")
    except ValueError:
        address = None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address is None or not any(address in n for n in networks):
        raise ForbiddenError(
            f"the {source.value} hook does not accept deliveries from "
            f"{peer or 'an unknown address'}",
            code="hook.address_refused",
        )


def check_secret(settings: Settings, source: EventSource, authorization: str | None) -> None:
    """Raise ``hook.unauthenticated`` unless the header carries the source's secret."""
    secret = hook_secret(settings, source)
    if secret is None:
        raise HookAuthError(
            f"the {source.value} hook is disabled: no SEALGATE_HOOK_SECRET is configured"
        )
    given = (authorization or "").encode()
    plain = hmac.compare_digest(given, secret.encode())
    bearer = hmac.compare_digest(given, f"Bearer {secret}".encode())
    if not (plain or bearer):
        raise HookAuthError(f"the {source.value} hook needs its shared secret in Authorization")
