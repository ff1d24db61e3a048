"""Token scopes, over the image globs of ``app.oci.globs``.

A token scope is ``ACTION:GLOB`` (``sign:ghcr.io/acme/*``, ``scan:**``) or ``admin``,
which allows every action on every image. ``audit:GLOB`` reads the audit records that name
those images; ``audit:**`` reads the whole trail.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from app.errors import InputError
from app.oci.globs import glob_matches, validate_glob

ACTIONS = frozenset({"sign", "scan", "verify", "push", "audit"})
ADMIN = "admin"


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
