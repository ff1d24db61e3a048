"""JSON log lines (``app.observability.JsonFormatter``)."""

from __future__ import annotations

import json
import logging

from app.observability import JsonFormatter


def _line(**extra: object) -> dict[str, object]:
    record = logging.makeLogRecord({"name": "app.test", "levelno": 20, "levelname": "INFO"})
    record.msg = "request"
    for key, value in extra.items():
        setattr(record, key, value)
    parsed = json.loads(JsonFormatter().format(record))
    assert isinstance(parsed, dict)
    return parsed


def test_a_record_is_one_json_object_with_its_extra_fields() -> None:
    line = _line(path="/admission/validate", status=200, duration_ms=0.5, image="r.test/ünï:1")
    assert (line["level"], line["logger"], line["msg"]) == ("info", "app.test", "request")
    assert (line["path"], line["status"], line["duration_ms"]) == ("/admission/validate", 200, 0.5)
    assert line["image"] == "r.test/ünï:1"
    assert str(line["ts"]).endswith("Z")


def test_values_json_cannot_hold_are_written_as_text() -> None:
    """A value that is not JSON data is its ``str``, and an integer beyond 64 bits (which
    orjson refuses) is still written: a log line never fails."""
    line = _line(error=ValueError("bad"), big=2**70)
    assert line["error"] == "bad" and line["big"] == 2**70
