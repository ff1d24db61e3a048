"""Text that came from JSON: finding strings that are not valid Unicode.

JSON may spell a lone UTF-16 surrogate (``"\\ud800"``) and ``json.loads`` accepts it,
giving a Python string that cannot be encoded as UTF-8. Such a string fails far from
where it came in (the database driver, the policy engine, the response serialiser), so
the edges that take JSON (request bodies, scan reports) look for one first.
"""

from __future__ import annotations

from typing import Any

LONE_SURROGATE = "a lone UTF-16 surrogate escape such as \\ud800"


def find_unencodable(data: Any) -> str | None:
    """Where in decoded JSON ``data`` the first string (key or value) that cannot be
    encoded as UTF-8 sits (``files.a.rego``, ``keys.0``, ``a key in annotations``, ``a
    top-level key``, ``document`` when ``data`` is that string), or None if there is none."""
    pending: list[tuple[str, Any]] = [("", data)]  # a loop: JSON may nest very deep
    while pending:
        where, item = pending.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return where or "document"
        elif isinstance(item, dict):
            for key, value in item.items():
                pending.append((f"a key in {where}" if where else "a top-level key", key))
                pending.append((f"{where}.{key}" if where else str(key), value))
        elif isinstance(item, list):
            pending.extend((f"{where}.{i}" if where else str(i), v) for i, v in enumerate(item))
    return None
