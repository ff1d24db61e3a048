"""OPA built-ins a published policy may not call: those that reach outside the engine.

A policy runs at publish time (its tests) and on every decision, inside the service. The
built-ins that contact the network (``http.send``, ``net.lookup_ip_addr``) or read the
service's own environment and configuration (``opa.runtime``) would let whoever publishes a
bundle make Sealgate send requests or read its secrets; Gatekeeper disables ``http.send``
by default for the same reason. Every other built-in of OPA's list is a pure function of
its arguments (``net.cidr_*`` included) or, like ``time.now_ns``, reads only the clock.

The embedded engine takes no OPA capabilities file, so the check reads the Rego source:
comments and string literals are skipped, and a reference to one of these built-ins,
called or not (``with http.send as mock`` in a test counts too), is refused with its file
and line. ``SEALGATE_POLICY_ALLOW_NETWORK=true`` turns the check off.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict

from app.errors import PolicyError

# Built-in -> why it is refused.
OUTSIDE_BUILTINS = {
    "http.send": "sends HTTP requests",
    "net.lookup_ip_addr": "resolves names over DNS",
    "opa.runtime": "exposes the service's environment variables and configuration",
}

_REFERENCE = re.compile(
    r"(?<![\w.])(?P<name>"
    + "|".join(
        r"\s*\.\s*".join(re.escape(part) for part in name.split(".")) for name in OUTSIDE_BUILTINS
    )
    + r")(?![\w])"
    # ``http["send"]`` spells the same reference; string contents are blanked below, so
    # any bracket after one of these namespaces is refused.
    + r"|(?<![\w.])(?P<dynamic>http|net|opa)\s*\["
)


class OutsideCall(BaseModel):
    """One reference to a refused built-in, located in the bundle."""

    model_config = ConfigDict(frozen=True)

    file: str
    line: int
    builtin: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.builtin}"


def outside_calls(modules: Mapping[str, str]) -> list[OutsideCall]:
    """Every reference to a built-in of ``OUTSIDE_BUILTINS`` in ``modules`` (path -> Rego)."""
    found: list[OutsideCall] = []
    for file, source in modules.items():
        code = _code_only(source)
        for match in _REFERENCE.finditer(code):
            name = match["name"]
            builtin = re.sub(r"\s+", "", name) if name else f"{match['dynamic']}[...]"
            line = code.count("\n", 0, match.start()) + 1
            found.append(OutsideCall(file=file, line=line, builtin=builtin))
    return found


def refuse_outside_calls(modules: Mapping[str, str]) -> None:
    """Raise PolicyError (``policy.network_builtin``, 422) naming the file and line of each
    reference to a built-in that reaches outside the engine."""
    calls = outside_calls(modules)
    if not calls:
        return
    first = calls[0]
    why = OUTSIDE_BUILTINS.get(first.builtin, "reaches a built-in namespace dynamically")
    more = f" (and {len(calls) - 1} more)" if len(calls) > 1 else ""
    raise PolicyError(
        f"{first.file}:{first.line}: the policy calls {first.builtin}, which {why}; such "
        f"built-ins are refused unless SEALGATE_POLICY_ALLOW_NETWORK=true{more}",
        code="policy.network_builtin",
        details={"calls": [c.model_dump() for c in calls]},
    )


def _code_only(source: str) -> str:
    """``source`` with comments and the contents of string literals blanked (newlines kept,
    so offsets and line numbers stay those of the source)."""
    out: list[str] = []
    i, n = 0, len(source)
    while i < n:
        c = source[i]
        if c == "#":
            end = source.find("\n", i)
            end = n if end < 0 else end
            out.append(" " * (end - i))
            i = end
        elif c == '"':
            j = i + 1
            while j < n and source[j] not in '"\n':
                j += 2 if source[j] == "\\" else 1
            end = min(j + 1, n) if j < n and source[j] == '"' else min(j, n)
            out.append(_blank(source[i:end]))
            i = end
        elif c == "`":
            end = source.find("`", i + 1)
            end = n if end < 0 else end + 1
            out.append(_blank(source[i:end]))
            i = end
        else:
            out.append(c)
            i += 1
    return "".join(out)


def _blank(text: str) -> str:
    return "".join(ch if ch == "\n" else " " for ch in text)
