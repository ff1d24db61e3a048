"""Content digests (``sha256:<hex>``): validate them, compute them, check bytes against them.

A digest is ``algorithm ":" encoded`` as the OCI image spec defines it. Sealgate computes and
verifies ``sha256`` and ``sha512`` (the two registered algorithms); a syntactically valid digest
with another algorithm is refused because its content could never be checked.
"""

from __future__ import annotations

import hashlib
import re

from app.errors import InputError

# OCI image spec, descriptor.md: algorithm-component ([a-z0-9]+) joined by [+._-].
_ALGORITHM = re.compile(r"^[a-z0-9]+(?:[+._-][a-z0-9]+)*$")
_ENCODED = re.compile(r"^[a-zA-Z0-9=_-]+$")

# Registered algorithms and the exact form of their encoded part (lowercase hex only).
_REGISTERED = {"sha256": 64, "sha512": 128}


def parse_digest(text: str) -> str:
    """Return ``text`` if it is a digest Sealgate can verify, else raise ``InputError``.

    The message names what is wrong (missing ``:``, unknown algorithm, wrong length, not hex).
    """
    algorithm, sep, encoded = text.partition(":")
    if not sep:
        raise InputError(f"digest {text!r} is not valid: expected '<algorithm>:<hex>'")
    if not _ALGORITHM.match(algorithm) or not _ENCODED.match(encoded):
        raise InputError(f"digest {text!r} is not valid: malformed algorithm or encoded part")
    length = _REGISTERED.get(algorithm)
    if length is None:
        raise InputError(
            f"digest {text!r} is not valid: algorithm {algorithm!r} is not supported "
            "(use sha256 or sha512)"
        )
    if len(encoded) != length or not re.fullmatch(r"[0-9a-f]+", encoded):
        raise InputError(
            f"digest {text!r} is not valid: {algorithm} needs {length} lowercase hex characters"
        )
    return text


def is_digest(text: str) -> bool:
    """Whether ``text`` is a digest ``parse_digest`` accepts."""
    try:
        parse_digest(text)
    except InputError:
        return False
    return True


def compute_digest(data: bytes, *, algorithm: str = "sha256") -> str:
    """The digest of ``data`` with ``algorithm`` (``sha256`` or ``sha512``)."""
    if algorithm not in _REGISTERED:
        raise InputError(f"digest algorithm {algorithm!r} is not supported (use sha256 or sha512)")
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


def matches_digest(data: bytes, digest: str) -> bool:
    """Whether ``data`` hashes to ``digest`` (computed with the digest's own algorithm)."""
    algorithm = parse_digest(digest).partition(":")[0]
    return compute_digest(data, algorithm=algorithm) == digest


def fallback_tag(digest: str) -> str:
    """The OCI 1.1 referrers tag schema tag for ``digest``: ``<alg>-<hex>``.

    distribution-spec: the algorithm truncated to 32 characters, ``-``, the encoded part
    truncated to 64 characters, with characters not allowed in a tag replaced by ``-``.
    """
    algorithm, _, encoded = parse_digest(digest).partition(":")
    tag = f"{algorithm[:32]}-{encoded[:64]}"
    return re.sub(r"[^a-zA-Z0-9_.-]", "-", tag)
