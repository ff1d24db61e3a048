"""Checks of the default library's parameters (``data.parameters``) made before Rego sees them.

Rego cannot reject bad data gracefully: an impossible allowlist expiry such as
``2026-02-30`` makes ``time.parse_rfc3339_ns`` fail, which fails every decision (closed,
but for everyone). So bundles are checked when they are published, checked or loaded,
and the first problem is named by its place in the data. Checks only cover what the
default library reads; other keys are left to the bundle's own Rego.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator, Mapping
from typing import Any

from app.errors import PolicyError

MODES = {"enforce", "warn", "audit"}
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")


def check_parameters(data: Mapping[str, Any]) -> None:
    """Raise PolicyError (``policy.data``) naming the first unusable parameter."""
    for where, problem in parameter_problems(data):
        raise PolicyError(f"data.json: {where}: {problem}", code="policy.data")


def parameter_problems(data: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """Every (place, problem) in the parameters, in a stable order."""
    for where, scope in _scopes(data):
        if not isinstance(scope, Mapping):
            yield where, "must be an object"
            continue
        mode = scope.get("mode")
        if mode is not None and mode not in MODES:
            yield f"{where}.mode", f"must be one of {', '.join(sorted(MODES))}, not {mode!r}"
        vulnerabilities = scope.get("vulnerabilities") or {}
        allowlist = (
            vulnerabilities.get("allowlist", []) if isinstance(vulnerabilities, dict) else []
        )
        for index, entry in enumerate(allowlist if isinstance(allowlist, list) else [None]):
            yield from _allowlist_problems(f"{where}.vulnerabilities.allowlist[{index}]", entry)
    exemptions = data.get("exemptions", [])
    for index, exemption in enumerate(exemptions if isinstance(exemptions, list) else [None]):
        place = f"exemptions[{index}]"
        if not isinstance(exemption, Mapping):
            yield place, "must be an object"
            continue
        for key in ("name", "reason"):
            if not isinstance(exemption.get(key), str) or not exemption[key]:
                yield f"{place}.{key}", "is required"
        if not exemption.get("namespaces") and not exemption.get("images"):
            yield place, "must name namespaces or images (an exemption for everything is refused)"


def _scopes(data: Mapping[str, Any]) -> Iterator[tuple[str, Any]]:
    yield "defaults", data.get("defaults", {})
    for group in ("namespaces", "repositories"):
        members = data.get(group, {})
        if not isinstance(members, Mapping):
            yield group, members
            continue
        for name, scope in members.items():
            yield f"{group}[{name!r}]", scope


def _allowlist_problems(where: str, entry: Any) -> Iterator[tuple[str, str]]:
    if not isinstance(entry, Mapping):
        yield where, "must be an object with id, reason and expires"
        return
    for key in ("id", "reason", "expires"):
        if not isinstance(entry.get(key), str) or not entry[key]:
            yield f"{where}.{key}", "is required"
    expires = entry.get("expires")
    if isinstance(expires, str) and expires and not _valid_time(expires):
        yield f"{where}.expires", f"{expires!r} is not a date (YYYY-MM-DD) or RFC 3339 time"


def _valid_time(text: str) -> bool:
    if not (_DATE.match(text) or _TIME.match(text)):
        return False
    try:
        dt.datetime.fromisoformat(text)
    except ValueError:
        return False
    return True
