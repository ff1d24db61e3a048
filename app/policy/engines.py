"""Policy engines: OPA's Go engine in process (default) or an OPA server over REST.

This first version only provides what the service skeleton needs (construction and a
health check); evaluation is added with the policy library.
"""

from __future__ import annotations

from typing import Protocol

from app.config import Settings
from app.errors import PolicyError


class PolicyEngine(Protocol):
    def check_health(self) -> None:
        """Raise PolicyError unless the engine can evaluate."""

    def close(self) -> None: ...


class EmbeddedOpaEngine:
    """OPA's own Go engine loaded in process through ``opa_bindings``."""

    def __init__(self) -> None:
        try:
            from opa_bindings import OpaEngine
        except ImportError as e:  # pragma: no cover - depends on the install
            raise PolicyError(
                "the embedded OPA engine is not installed: run `make install` "
                "(pip install --ignore-requires-python opa-golib-python-bindings==0.4.4)",
                code="policy.engine_missing",
            ) from e
        self._opa = OpaEngine()

    def check_health(self) -> None:
        try:
            self._opa.eval_query("x := 1", {})
        except Exception as e:
            raise PolicyError(f"embedded OPA engine failed: {e}", code="policy.engine") from e

    def close(self) -> None:
        self._opa.close()


def build_engine(settings: Settings) -> PolicyEngine:
    return EmbeddedOpaEngine()
