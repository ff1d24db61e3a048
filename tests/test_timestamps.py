"""The one way Sealgate writes a point in time: ISO 8601, UTC, ``Z``."""

from __future__ import annotations

import datetime as dt

from app.timestamps import iso_utc


def test_utc_ends_in_z() -> None:
    assert iso_utc(dt.datetime(2026, 11, 28, 9, 30, tzinfo=dt.UTC)) == "2026-11-28T09:30:00Z"


def test_other_zones_are_converted() -> None:
    paris = dt.timezone(dt.timedelta(hours=1))
    assert iso_utc(dt.datetime(2026, 11, 28, 10, 30, 0, 5, tzinfo=paris)) == (
        "2026-11-28T09:30:00.000005Z"
    )


def test_naive_is_taken_as_utc() -> None:
    assert iso_utc(dt.datetime(2026, 11, 28, 9, 30)) == "2026-11-28T09:30:00Z"
