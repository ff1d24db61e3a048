"""Explanations: which rules fired for a decision, and why, read from OPA's trace.

A rule "fired" when the trace shows its body exiting (every condition held). For each
one the explanation gives its location, the rule's name, the value it produced where
the trace records it (a denial or a warning), and the rule's source lines from the
bundle, which are the conditions that held.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict

_RULE_HEAD = re.compile(r"^(?P<name>[A-Za-z_]\w*)(?: contains |\s*:?=|\[| if )")
_LOCATION = re.compile(r"^(?P<file>.+\.rego):(?P<line>\d+)$")
MAX_SOURCE_LINES = 30


class FiredRule(BaseModel):
    model_config = ConfigDict(frozen=True)

    location: str
    rule: str
    produced: dict[str, Any] | None = None
    source: list[str]

    def render(self) -> str:
        lines = [f"{self.location}: {self.rule}"]
        if self.produced is not None:
            code = self.produced.get("code")
            lines[0] += f" -> {code}" if code else f" -> {self.produced}"
        lines.extend(f"    {text}" for text in self.source)
        return "\n".join(lines)


def fired_rules(
    trace: list[dict[str, Any]], *, modules: Mapping[str, str], include_helpers: bool = False
) -> list[FiredRule]:
    """The rules whose bodies succeeded, in first-fired order, each once per output.

    Without ``include_helpers`` only rules that produce findings (``violations``,
    ``warnings``, ``deny``, ``warn``) are listed; helpers (parameters and the like)
    fire on every decision and say little.
    """
    fired: list[FiredRule] = []
    seen: set[tuple[str, str]] = set()
    for event in trace:
        if event.get("op") != "Exit":
            continue
        location = _LOCATION.match(str(event.get("location", "")))
        head = _RULE_HEAD.match(str(event.get("node", "")))
        if location is None or head is None:
            continue
        name = head["name"]
        if not include_helpers and name not in {"violations", "warnings", "deny", "warn"}:
            continue
        produced = _finding(event.get("locals") or {})
        key = (location.group(0), repr(produced))
        if key in seen:
            continue
        seen.add(key)
        fired.append(
            FiredRule(
                location=location.group(0),
                rule=name,
                produced=produced,
                source=_rule_source(modules.get(location["file"], ""), int(location["line"])),
            )
        )
    return fired


def _finding(local_values: dict[str, Any]) -> dict[str, Any] | None:
    """The finding a rule body produced: the one bound value shaped like a finding."""
    for value in local_values.values():
        if isinstance(value, dict) and isinstance(value.get("code"), str):
            return value
    return None


def _rule_source(source: str, line: int) -> list[str]:
    """The rule starting at ``line``: up to the first line that closes its body."""
    lines = source.split("\n")[line - 1 :]
    taken: list[str] = []
    for text in lines[:MAX_SOURCE_LINES]:
        taken.append(text.rstrip())
        if text.startswith("}") or (len(taken) == 1 and "{" not in text):
            break
    return taken
