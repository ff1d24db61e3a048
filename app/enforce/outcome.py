"""What a decision request asks and what every enforcement point gets back.

``DecisionRequest`` names the image, the entry point, the deadline, who asks and, at
admission, the Kubernetes context. ``Outcome`` is frozen: the decision and its reason
codes, the image and digest decided on, the policy version and revision that decided,
who asked, the request id, the time each step took and which cache answered. A failure
(registry, store, engine, deadline) is an outcome too, carrying its original stable code
in ``failure``; nothing but an invalid reference escapes ``decide`` as an exception.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, SkipValidation

from app.enforce.deadline import Deadline
from app.failure_mode import FailureMode
from app.policy.decision import PolicyDecision
from app.policy.input import Entrypoint, KubernetesContext


class Actor(BaseModel):
    """Who asked: an API token, a Kubernetes user, a registry event's actor, the CLI."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["token", "kubernetes", "registry", "cli", "internal"] = "internal"
    name: str | None = None


@dataclass(frozen=True)
class DecisionRequest:
    """One image to decide at one entry point, within ``deadline``."""

    image: str
    entrypoint: Entrypoint
    deadline: Deadline
    kubernetes: KubernetesContext | None = None
    actor: Actor = field(default_factory=Actor)
    request_id: str | None = None
    # Where the request came from: an admission request uid, a registry event id.
    source: str | None = None
    failure_mode: FailureMode = FailureMode.closed
    dry_run: bool = False


class Outcome(BaseModel):
    """The answer of the decision pipeline for one image (see the module doc)."""

    model_config = ConfigDict(frozen=True)

    image: str
    digest: str | None
    entrypoint: Entrypoint
    allowed: bool
    decision: PolicyDecision
    codes: tuple[str, ...] = Field(description="Codes of the denials (or of the failure).")
    failure: str | None = Field(
        default=None, description="Stable code of what stopped the decision, if anything."
    )
    policy_version: int | None = None
    policy_revision: str | None = None
    actor: Actor = Field(default_factory=Actor)
    request_id: str | None = None
    source: str | None = None
    dry_run: bool = False
    timings_ms: dict[str, float] = Field(default_factory=dict)
    cache: str | None = Field(
        default=None, description="'decision' or 'evidence' when a cache answered."
    )
    served_by: tuple[str, ...] | None = Field(
        default=None,
        description="Repositories other than the image's own that served its evidence "
        "(mirror endpoints, a signature repository); the input's image.served_by.",
    )
    # Taken as given, not copied: the pipeline built it, and the decision recorder knows a
    # remembered decision's input by its identity (``app.enforce.records``).
    input: SkipValidation[dict[str, Any]] = Field(
        default_factory=dict,
        description="The policy input decided on, findings replaced by their hash.",
        exclude=True,
    )
    # The findings the hash in ``input`` stands for, as the engine received them.
    encoded_findings: bytes | None = Field(default=None, exclude=True, repr=False)

    def full_input(self) -> dict[str, Any]:
        """The input exactly as the engine received it (findings included)."""
        document = dict(self.input)
        scan = document.get("scan")
        if isinstance(scan, dict) and self.encoded_findings is not None:
            document["scan"] = {**scan, "vulnerabilities": orjson.loads(self.encoded_findings)}
        return document

    @property
    def warnings(self) -> list[str]:
        return [w.message for w in self.decision.warn]
