"""What a registry notification says, once parsed: ``RegistryEvent`` and ``ParsedEnvelope``.

Every parser (``app.hooks.distribution``, ``app.hooks.harbor``) turns one request body into
a ``ParsedEnvelope``: the events the worker acts on, the ones acknowledged and ignored
(pulls, blobs, mounts, Sealgate's own signature pushes, event types we do not use) and the
ones that could not be read (an unreadable event does not fail the rest of the envelope).
A body that is not an envelope at all raises ``HookError`` (400).
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from app.errors import InputError
from app.oci.refs import ImageRef
from app.scans.document import parse_timestamp

# An envelope with more events than this is refused whole (distribution sends few per request).


class EventSource(StrEnum):
    distribution = "distribution"
    harbor = "harbor"


class EventAction(StrEnum):
    """What the worker does with an event."""

    push = "push"  # a manifest was pushed: decide it
    delete = "delete"  # a manifest was deleted: mark its verdicts deleted
    scan_completed = "scan_completed"  # the registry scanned it: store the scan, re-decide
    scan_failed = "scan_failed"  # recorded only
    scan_stopped = "scan_stopped"  # recorded only


class ScanOverview(BaseModel):
    """A registry scanner's summary of one artifact (Harbor's ``scan_overview``)."""

    model_config = ConfigDict(frozen=True)

    report_media_type: str
    status: str | None = None
    scanner: str | None = None
    scanner_version: str | None = None
    severity: str | None = None
    total: int | None = None
    fixable: int | None = None
    counts: dict[str, int] = Field(default_factory=dict)
    started_at: str | None = None
    finished_at: str | None = None


class RegistryEvent(BaseModel):
    """One event about one artifact, whichever registry sent it."""

    model_config = ConfigDict(frozen=True)

    source: EventSource
    event_id: str = Field(min_length=1, max_length=255)
    action: EventAction
    registry: str = Field(description="Registry host[:port] the artifact lives on.")
    repository: str
    tag: str | None = None
    digest: str | None = None
    media_type: str | None = None
    artifact_type: str | None = None
    actor: str | None = None
    occurred_at: dt.datetime | None = None
    scan: ScanOverview | None = None

    @property
    def name(self) -> str:
        """``registry/repository``."""
        return f"{self.registry}/{self.repository}"

    @property
    def image(self) -> str:
        """The reference the worker decides: pinned by digest when the event has one."""
        if self.digest:
            return f"{self.name}@{self.digest}"
        return f"{self.name}:{self.tag}" if self.tag else self.name


class IgnoredEvent(BaseModel):
    model_config = ConfigDict(frozen=True)

    event_id: str | None
    reason: str


class ParsedEnvelope(BaseModel):
    model_config = ConfigDict(frozen=True)

    events: tuple[RegistryEvent, ...] = ()
    ignored: tuple[IgnoredEvent, ...] = ()
    unreadable: tuple[IgnoredEvent, ...] = ()


def text_field(value: Any, *, limit: int = 1024) -> str | None:
    """A non-empty string field, or None (wrong type, empty or over ``limit`` characters)."""
    if isinstance(value, str) and value.strip() and len(value) <= limit and "\x00" not in value:
        return value.strip()
    return None


def parse_time(value: Any) -> dt.datetime | None:
    """An RFC 3339 time or a Unix timestamp as an aware datetime, or None."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            return dt.datetime.fromtimestamp(value, dt.UTC)
        except (ValueError, OverflowError, OSError):
            return None
    return parse_timestamp(value) if isinstance(value, str) else None


def build_event(index: int, **fields: Any) -> RegistryEvent | IgnoredEvent:
    """A ``RegistryEvent`` whose image reference parses, else an unreadable ``IgnoredEvent``."""
    try:
        event = RegistryEvent(**fields)
        ImageRef.parse(event.image)
    except InputError as e:
        problem = e.message
    except ValueError as e:
        problem = str(e).splitlines()[0]
    else:
        return event
    event_id = fields.get("event_id")
    return IgnoredEvent(
        event_id=event_id if isinstance(event_id, str) else None,
        reason=f"unreadable: event {index}: {problem}"[:300],
    )
