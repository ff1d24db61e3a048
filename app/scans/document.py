"""The raw report document: size cap, JSON decoding and shape validation, with clear errors.

Every parser goes through here so that oversized bodies (``scan.too_large``), bytes that
are not JSON and JSON of the wrong shape (``scan.malformed``) fail the same way, with a
message that says where the problem is.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from app.errors import ScanError
from app.json_text import LONE_SURROGATE, find_unencodable
from app.limits import MAX_REPORT_BYTES
from app.oci.digests import is_digest

MAX_PROBLEMS_SHOWN = 3
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")

M = TypeVar("M", bound=BaseModel)


class WireModel(BaseModel):
    """Base of the models that mirror a scanner's format: frozen, unknown keys ignored
    (scanners add fields in every release), aliases or wire names both accepted."""

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)


def load_document(data: bytes, *, max_bytes: int = MAX_REPORT_BYTES) -> Any:
    """Decode a report's JSON; ScanError if it is too large, empty or not JSON."""
    if len(data) > max_bytes:
        raise ScanError(
            f"the report is {len(data)} bytes, larger than the limit of {max_bytes} bytes",
            code="scan.too_large",
        )
    if not data.strip():
        raise ScanError("the report is empty", code="scan.malformed")
    try:
        document = json.loads(data)
    except UnicodeDecodeError as e:
        raise ScanError("the report is not UTF-8 text", code="scan.malformed") from e
    except json.JSONDecodeError as e:
        raise ScanError(
            f"the report is not valid JSON: {e.msg} at line {e.lineno} column {e.colno}",
            code="scan.malformed",
        ) from e
    except RecursionError as e:
        raise ScanError("the report is nested too deeply", code="scan.malformed") from e
    # Only an escape can spell a lone surrogate (UTF-8 bytes cannot): skip the walk without one.
    if _SURROGATE_ESCAPE.search(data):
        where = find_unencodable(document)
        if where is not None:
            raise ScanError(
                f"the report is not valid Unicode text at {where[:200]!a}: it holds "
                f"{LONE_SURROGATE}",
                code="scan.malformed",
            )
    return document


def validate_shape(model: type[M], document: Any, *, what: str) -> M:
    """Validate ``document`` against a wire-format model; ScanError naming the bad fields."""
    try:
        return model.model_validate(document)
    except ValidationError as e:
        problems = []
        for err in e.errors()[:MAX_PROBLEMS_SHOWN]:
            where = ".".join(str(p) for p in err["loc"]) or "document"
            problems.append(f"{where}: {err['msg']}")
        more = e.error_count() - len(problems)
        suffix = f" (and {more} more)" if more > 0 else ""
        raise ScanError(
            f"not a valid {what}: " + "; ".join(problems) + suffix, code="scan.malformed"
        ) from e


def parse_timestamp(value: str | None) -> dt.datetime | None:
    """An RFC 3339 timestamp as an aware UTC datetime; None when absent or unreadable.

    Scanners write times with nanoseconds or odd zones; a report is still usable without
    its time, and ingestion then records the upload time instead.
    """
    if not value:
        return None
    text = value.strip().replace("Z", "+00:00")
    # Python parses at most microseconds: cut longer fractions.
    if "." in text:
        head, _, rest = text.partition(".")
        digits = len(rest) - len(rest.lstrip("0123456789"))
        text = f"{head}.{rest[: min(digits, 6)]}{rest[digits:]}"
    try:
        parsed = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.astimezone(dt.UTC)


def image_names(*groups: str | list[str] | None) -> tuple[str, ...]:
    """The image references a report gives (scanned name, repo tags, repo digests), in
    order, without blanks or repeats."""
    names: list[str] = []
    for group in groups:
        for name in [group] if isinstance(group, str) else group or []:
            if name.strip():
                names.append(name.strip())
    return tuple(dict.fromkeys(names))


def digest_of_repo_digest(value: str) -> str | None:
    """``sha256:...`` from ``repo@sha256:...`` or a bare digest; None otherwise."""
    _, _, digest = value.rpartition("@")
    return digest if is_digest(digest) else None
