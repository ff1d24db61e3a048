"""The long-lived parts one process shares: settings, database, registry client, policy engine.

``Services`` is built once (by the API's lifespan or by a CLI command) and passed
explicitly to domain functions; nothing reaches for globals.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.db.session import make_engine, make_session_factory

if TYPE_CHECKING:
    from app.enforce.caches import DecisionCaches
    from app.enforce.pipeline import DecisionParts
    from app.oci.client import RegistryClient
    from app.policy.engines import PolicyEngine


@dataclass
class Services:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    _registry: RegistryClient | None = field(default=None, repr=False)
    _policy: PolicyEngine | None = field(default=None, repr=False)
    _policy_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _parts: DecisionParts | None = field(default=None, repr=False)
    _parts_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def from_settings(cls, settings: Settings) -> Services:
        engine = make_engine(settings.database_url)
        return cls(settings=settings, engine=engine, sessions=make_session_factory(engine))

    @property
    def registry(self) -> RegistryClient:
        """The shared async registry client, created on first use."""
        if self._registry is None:
            from app.oci.client import RegistryClient
            from app.oci.locks import index_lock_for

            self._registry = RegistryClient.from_settings(
                self.settings, index_lock=index_lock_for(self.engine)
            )
        return self._registry

    @property
    def policy(self) -> PolicyEngine:
        """The policy engine (embedded OPA, or an OPA server), created once on first use.

        The version poller's thread and the first request may both ask at start-up: the
        lock makes sure they get the same engine (a second one would miss what the poller
        loads into the first).
        """
        with self._policy_lock:
            if self._policy is None:
                from app.policy.engines import build_engine

                self._policy = build_engine(self.settings)
            return self._policy

    @property
    def decisions(self) -> DecisionParts:
        """What the decision pipeline uses (caches, store context, engine workers, the
        batching recorder), built once; its registry client is always the current one."""
        with self._parts_lock:
            if self._parts is None:
                from app.enforce.pipeline import build_parts

                self._parts = build_parts(
                    settings=self.settings,
                    sessions=self.sessions,
                    registry=lambda: self.registry,
                    engine=lambda: self.policy,
                )
            return self._parts

    @property
    def caches(self) -> DecisionCaches:
        return self.decisions.caches

    async def close_registry(self) -> None:
        """Close the registry client, in the event loop that used it; a later use builds
        a new one."""
        registry, self._registry = self._registry, None
        if registry is not None:
            await registry.aclose()

    async def aclose(self) -> None:
        """Close everything, the registry client included (call it in the loop that used it)."""
        await self.close_registry()
        self.close()

    def close(self) -> None:
        """Close the policy engine and the database pool.

        A registry client still open is left to the garbage collector: its connections
        belong to an event loop that only ``aclose`` can reach.
        """
        self._registry = None
        parts, self._parts = self._parts, None
        if parts is not None:
            parts.close()
        policy, self._policy = self._policy, None
        if policy is not None:
            policy.close()
        self.engine.dispose()
