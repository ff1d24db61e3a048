"""Policy versions: publishing bundles, activating and rolling back, and following the
active version on every replica.

A bundle becomes a version only after it compiles and its Rego tests pass; a rejected
bundle changes nothing. Exactly one version is active at a time; activating another
(newer or older: that is a rollback) is one transaction. ``ActiveVersionPoller`` reads
the version table every few seconds and loads the active version into the replica's
engine, so all replicas converge without talking to each other.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel, ConfigDict
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from app.audit.chain import append_audit
from app.audit.changes import change_entry
from app.audit.entry import CLI_ACTOR, AuditEntry, AuditKind
from app.db.models import PolicyVersion
from app.db.session import session_scope
from app.errors import ConflictError, Error, NotFoundError, PolicyError
from app.policy.builtins import refuse_outside_calls
from app.policy.bundle import PolicyBundle
from app.policy.engines import PolicyEngine
from app.policy.parameters import check_parameters
from app.policy.worker import BundleLimits, run_tests_in_worker

log = logging.getLogger("sealgate.policy")

DEFAULT_POLL_INTERVAL = 2.0
# Version numbers start at 1 and live in an INTEGER column (32-bit on PostgreSQL).
MAX_VERSION = 2**31 - 1


class PolicyVersionInfo(BaseModel):
    """A stored version as the API and CLI show it (its files are not included)."""

    model_config = ConfigDict(frozen=True)

    version: int
    content_hash: str
    author: str
    message: str
    active: bool
    created_at: dt.datetime
    activated_at: dt.datetime | None

    @classmethod
    def from_row(cls, row: PolicyVersion) -> PolicyVersionInfo:
        return cls(
            version=row.version,
            content_hash=row.content_hash,
            author=row.author,
            message=row.message,
            active=row.active,
            created_at=row.created_at,
            activated_at=row.activated_at,
        )


def check_bundle(bundle: PolicyBundle, *, limits: BundleLimits | None = None) -> None:
    """Raise PolicyError unless ``bundle`` compiles, its parameters are usable, it calls
    no built-in that reaches outside the engine (unless ``limits`` allow it) and every one
    of its tests passes, compiled and tested in a worker process within ``limits``.

    The error names the file and line of the first compile error, refused built-in
    (``policy.network_builtin``) or failing test, or the place in data.json of the first
    unusable parameter; ``policy.compile_limit`` when the worker ran out of time or memory.
    """
    limits = limits or BundleLimits()
    check_parameters(bundle.data)
    if not limits.allow_network:
        refuse_outside_calls(bundle.modules)
    report = run_tests_in_worker(bundle, limits=limits)
    if report.failed:
        failures = report.failures
        first = failures[0]
        raise PolicyError(
            f"{report.summary()}: {first.test.file}:{first.test.line}: "
            f"{first.test.document}: {first.message}",
            code="policy.tests_failed",
            details={
                "failures": [
                    {
                        "file": f.test.file,
                        "line": f.test.line,
                        "rule": f.test.document,
                        "message": f.message,
                    }
                    for f in failures
                ]
            },
        )


def publish_bundle(
    session: Session,
    *,
    bundle: PolicyBundle,
    author: str,
    message: str = "",
    activate: bool = True,
    limits: BundleLimits | None = None,
) -> PolicyVersionInfo:
    """Store ``bundle`` as the next version (and activate it unless told not to).

    Raises PolicyError when ``check_bundle`` refuses it within ``limits`` (nothing is
    stored), ConflictError when another writer took the same version number at the same
    time. Audited as ``policy.publish`` (and the
    activation) by ``author``.
    """
    check_bundle(bundle, limits=limits)
    latest = session.scalar(select(func.max(PolicyVersion.version)))
    row = PolicyVersion(
        version=(latest or 0) + 1,
        content_hash=bundle.content_hash,
        files=bundle.files(),
        author=author,
        message=message,
    )
    session.add(row)
    try:
        session.flush()
    except IntegrityError as e:
        raise ConflictError(
            "another policy version was published at the same time; retry",
            code="policy.version_conflict",
        ) from e
    entries = [
        change_entry(
            kind=AuditKind.policy_publish,
            actor=author,
            object=f"policy/{row.version}",
            policy_version=row.version,
            details={"content_hash": row.content_hash, "message": message[:500]},
        )
    ]
    if activate:
        entries.append(_activate(session, row, actor=author))
    append_audit(session, entries)  # last: the chain lock is taken after the activation lock
    return PolicyVersionInfo.from_row(row)


def activate_version(
    session: Session, *, version: int, actor: str = CLI_ACTOR
) -> PolicyVersionInfo:
    """Make ``version`` the active one (a rollback when it is older); NotFoundError if none.
    Audited as ``policy.activate`` or ``policy.rollback`` by ``actor``."""
    row = _find_version(session, version)
    if row is None:
        raise NotFoundError(
            f"policy version {version} does not exist", code="not_found.policy_version"
        )
    append_audit(session, [_activate(session, row, actor=actor)])
    return PolicyVersionInfo.from_row(row)


def _find_version(session: Session, version: int) -> PolicyVersion | None:
    """The row of ``version``, or None. Numbers outside the column's range name no version:
    asked for them, the database driver would raise (SQLite OverflowError, PostgreSQL
    DataError) instead of finding nothing."""
    if not 1 <= version <= MAX_VERSION:
        return None
    return session.scalar(select(PolicyVersion).where(PolicyVersion.version == version))


# Advisory-lock id under which activations take turns on PostgreSQL ("sgpolicy").
_ACTIVATION_LOCK = 0x7367706F6C696379


def _activate(session: Session, row: PolicyVersion, *, actor: str) -> AuditEntry:
    """Make ``row`` the active version; return the audit entry saying so (the caller
    appends it last)."""
    if session.get_bind().dialect.name == "postgresql":
        # Two activations at once would each clear the others' flag and set their own,
        # leaving two active versions; take turns (SQLite serialises writers anyway).
        session.execute(select(func.pg_advisory_xact_lock(_ACTIVATION_LOCK)))
    previous = session.scalar(select(PolicyVersion.version).where(PolicyVersion.active.is_(True)))
    session.execute(
        update(PolicyVersion).where(PolicyVersion.active.is_(True)).values(active=False)
    )
    row.active = True
    row.activated_at = dt.datetime.now(dt.UTC)
    session.flush()
    rollback = previous is not None and row.version < previous
    return change_entry(
        kind=AuditKind.policy_rollback if rollback else AuditKind.policy_activate,
        actor=actor,
        object=f"policy/{row.version}",
        policy_version=row.version,
        details={"previous_version": previous, "content_hash": row.content_hash},
    )


def list_versions(session: Session) -> list[PolicyVersionInfo]:
    """Every stored version, newest first."""
    rows = session.scalars(select(PolicyVersion).order_by(PolicyVersion.version.desc()))
    return [PolicyVersionInfo.from_row(row) for row in rows]


def stored_bundle(session: Session, *, version: int | None = None) -> tuple[int, PolicyBundle]:
    """The bundle of ``version``, or of the active version; NotFoundError when there is none."""
    if version is None:
        row = session.scalar(select(PolicyVersion).where(PolicyVersion.active.is_(True)))
    else:
        row = _find_version(session, version)
    if row is None:
        what = "no policy version is active" if version is None else f"no policy version {version}"
        raise NotFoundError(what, code="not_found.policy_version")
    return row.version, PolicyBundle.from_files(row.files)


class ActiveVersionPoller:
    """Keeps one engine on the active version; ``poll_once`` is one check, ``start`` loops.

    ``engine_source`` returns the engine to load, so a poller can start before the engine
    has been built. ``version`` is the version the
    engine holds, for decision records (None while it holds the policy directory).

    Until a version is active the engine keeps what it was built with (the policy
    directory). A version that fails to load (an OPA server down, say) is retried on
    the next poll; the engine keeps deciding with what it had.
    """

    def __init__(
        self,
        *,
        engine_source: Callable[[], PolicyEngine],
        sessions: sessionmaker[Session],
        data_override: Path | None = None,
        interval: float = DEFAULT_POLL_INTERVAL,
        on_load: Callable[[int], None] | None = None,
    ) -> None:
        self.engine_source = engine_source
        self.sessions = sessions
        self.data_override = data_override
        self.interval = interval
        self.on_load = on_load
        self.version: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def poll_once(self) -> bool:
        """Load the active version if it changed; True when a new version was loaded."""
        with session_scope(self.sessions) as session:
            active = session.execute(
                select(PolicyVersion.version).where(PolicyVersion.active.is_(True))
            ).scalar_one_or_none()
            if active is None or active == self.version:
                return False
            version, bundle = stored_bundle(session, version=active)
        merged = bundle.with_data_overrides(self.data_override)
        check_parameters(merged.data)
        # The engine stores the version with the bundle, in the same swap.
        self.engine_source().load(merged, version=version)
        self.version = version
        log.info("policy version loaded", extra={"policy_version": version})
        if self.on_load is not None:
            self.on_load(version)
        return True

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="policy-poller", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.interval + 5)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll_once()
            except Error as e:
                log.warning(
                    "policy version could not be loaded; keeping the current one",
                    extra={"code": e.code, "error": e.message},
                )
            except Exception as e:  # the poller must outlive a database hiccup
                log.warning("policy poll failed", extra={"error": repr(e)[:200]})
            self._stop.wait(self.interval)
