"""Canonical JSON bytes and the ``sha256:<hex>`` names Sealgate gives them.

The same value must give the same bytes on every replica, or two replicas would name one
input twice and a recomputed chain hash would not match. Canonical here means: object keys
sorted, no white space, UTF-8 without ``\\u`` escapes for printable characters. orjson
(a dependency) writes that with ``OPT_SORT_KEYS``; without it the standard library writes
the same bytes for the values Sealgate stores (strings, integers, booleans, null, lists and
objects; floats may be spelled differently, which is why chain hashes never contain one).
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

try:
    import orjson
except ImportError:  # pragma: no cover - orjson is a declared dependency
    orjson = None  # type: ignore[assignment]

SHA256_PREFIX = "sha256:"
HASH_PATTERN = re.compile(r"^sha256:[0-9a-f]{64}$")


def canonical_json(value: Any) -> bytes:
    """The canonical JSON bytes of ``value`` (JSON-safe data only; ``TypeError`` otherwise)."""
    if orjson is not None:
        try:
            return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
        except orjson.JSONEncodeError as e:
            raise TypeError(f"not canonical JSON data: {e}") from e
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode()


def content_hash(data: bytes) -> str:
    """``sha256:<hex>`` of ``data``."""
    return SHA256_PREFIX + hashlib.sha256(data).hexdigest()
