"""Reading helpers: times given as ``7d`` or ISO, and cursors this service issued."""

from __future__ import annotations

import datetime as dt

import pytest

from app.audit.query import decode_cursor, encode_cursor, parse_since
from app.errors import AuditError

NOW = dt.datetime(2026, 12, 2, 12, 0, tzinfo=dt.UTC)


class TestParseSince:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("7d", NOW - dt.timedelta(days=7)),
            ("24h", NOW - dt.timedelta(hours=24)),
            ("30m", NOW - dt.timedelta(minutes=30)),
            ("2026-12-01", dt.datetime(2026, 12, 1, tzinfo=dt.UTC)),
            ("2026-12-01T08:00:00Z", dt.datetime(2026, 12, 1, 8, tzinfo=dt.UTC)),
            ("2026-12-01T08:00:00+02:00", dt.datetime(2026, 12, 1, 6, tzinfo=dt.UTC)),
        ],
    )
    def test_accepted(self, text: str, expected: dt.datetime) -> None:
        assert parse_since(text, now=NOW) == expected

    @pytest.mark.parametrize(
        "text", ["", "7 days", "-7d", "7w", "yesterday", "9999999d", "999999d"]
    )
    def test_refused(self, text: str) -> None:
        with pytest.raises(AuditError) as raised:
            parse_since(text, now=NOW)
        assert raised.value.code == "audit.since" and raised.value.http_status == 400


class TestCursor:
    def test_round_trip(self) -> None:
        assert decode_cursor(encode_cursor(12345)) == 12345

    @pytest.mark.parametrize("cursor", ["", "!!", "c2VxOg", "c2VxOi0x", "bm90OjE", "c2VxOmFiYw"])
    def test_foreign_cursors_are_refused(self, cursor: str) -> None:
        with pytest.raises(AuditError) as raised:
            decode_cursor(cursor)
        assert raised.value.code == "audit.cursor"
