"""How Sealgate writes a point in time for people and programs: ISO 8601 in UTC with ``Z``.

``iso_utc`` is the one formatter (CLI output, annotations Sealgate writes); it matches what
pydantic writes for the API's UTC datetimes (``2026-11-28T09:30:00Z``, with microseconds
when there are any).
"""

from __future__ import annotations

import datetime as dt


def iso_utc(moment: dt.datetime) -> str:
    """``moment`` as ISO 8601 in UTC ending in ``Z``; a naive datetime is taken as UTC."""
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)
    return aware.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
