"""Image globs: the patterns of authority scopes, token scopes, signing-key scopes and
signature repositories.

An image glob matches a normalised image name without tag or digest
(``registry/repository``): ``*`` matches within one path segment, ``**`` across
segments, every other character literally. ``ghcr.io/acme/*`` matches
``ghcr.io/acme/api`` but not ``ghcr.io/acme/team/api``; ``ghcr.io/acme/**`` matches both.
"""

from __future__ import annotations

import re
from functools import lru_cache

from app.errors import InputError


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


def glob_matches(glob: str, image_name: str) -> bool:
    """True when the image glob matches the whole normalised image name."""
    return _compile_glob(glob).fullmatch(image_name) is not None
