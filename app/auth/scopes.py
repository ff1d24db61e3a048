"""Image globs and token scopes.

An image glob matches a normalised image name without tag or digest
(``registry/repository``): ``*`` matches within one path segment, ``**`` across
segments, every other character literally. ``ghcr.io/acme/*`` matches
``ghcr.io/acme/api`` but not ``ghcr.io/acme/team/api``; ``ghcr.io/acme/**`` matches both.

A token scope is ``ACTION:GLOB`` (``sign:ghcr.io/acme/*``, ``scan:**``) or ``admin``,
which allows every action on every image. ``audit:GLOB`` reads the audit records that name
those images; ``audit:**`` reads the whole trail.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

from app.errors import InputError

ACTIONS = frozenset({"sign", "scan", "verify", "push", "audit"})
ADMIN = "admin"


@lru_cache(maxsize=1024)
def _compile_glob(glob: str) -> re.Pattern[str]:
    parts: list[str] = []
    i = 0
    while i < len(glob):
        if glob.startswith("**", i):
            parts.append(".*")
            i += 2
        elif glob[i] == "*":
            parts.append("[^/]*")
            i += 1
        else:
            parts.append(re.escape(glob[i]))
            i += 1
    return re.compile("".join(parts))


def validate_glob(glob: str) -> str:
    """Return ``glob`` if it can be used as an image glob, else raise InputError."""
    if not glob or any(c.isspace() for c in glob):
        raise InputError(f"image glob {glob!r} is empty or contains white space")
    if "@" in glob:
        raise InputError(f"image glob {glob!r} must not name a digest; globs match names only")
    if ":" in glob.rsplit("/", 1)[-1] and "/" in glob:
        raise InputError(f"image glob {glob!r} must not name a tag; globs match names only")
    return glob


def required_globs(globs: Iterable[str] | None, *, what: str, code: str) -> tuple[str, ...]:
    """The image globs ``globs`` (validated, stripped, deduplicated), at least one.

    ``what`` names the object in the message (``"an authority"``, ``"a signing key"``); an
    empty or missing list raises ``InputError`` with ``code``, showing ``'**'`` as the way to
    say "every image" on purpose: no scope never silently means everything.
    """
    checked = tuple(dict.fromkeys(validate_glob(g.strip()) for g in globs or ()))
    if not checked:
        raise InputError(
            f"{what} must name the images it covers: give at least one scope (an image glob "
            "such as 'ghcr.io/acme/*'), or the scope '**' for every image on purpose "
            '(CLI: --scope \'**\'; API: "scopes": ["**"])',
            code=code,
        )
    return checked


def glob_matches(glob: str, image_name: str) -> bool:
    """True when the image glob matches the whole normalised image name."""
    return _compile_glob(glob).fullmatch(image_name) is not None


@dataclass(frozen=True)
class Scope:
    action: str  # "admin" or one of ACTIONS
    glob: str

    @classmethod
    def parse(cls, text: str) -> Scope:
        """Parse ``admin`` or ``ACTION:GLOB``; raise InputError naming what is wrong."""
        text = text.strip()
        if text == ADMIN:
            return cls(action=ADMIN, glob="**")
        action, sep, glob = text.partition(":")
        if not sep:
            raise InputError(
                f"scope {text!r} is not valid: write 'admin' or ACTION:IMAGE_GLOB, "
                f"ACTION one of {', '.join(sorted(ACTIONS))}"
            )
        if action not in ACTIONS:
            raise InputError(
                f"scope {text!r} names unknown action {action!r}; "
                f"known: admin, {', '.join(sorted(ACTIONS))}"
            )
        return cls(action=action, glob=validate_glob(glob))

    def allows(self, action: str, image_name: str) -> bool:
        if self.action == ADMIN:
            return True
        return self.action == action and glob_matches(self.glob, image_name)

    def __str__(self) -> str:
        return ADMIN if self.action == ADMIN else f"{self.action}:{self.glob}"
