"""The policy decision: what an entry point's Rego document returns, parsed and checked.

Every engine returns the same ``PolicyDecision``. Parsing is strict where safety needs
it and fails closed: a result that is not an object, has no boolean ``allow`` or has
malformed findings raises ``PolicyError`` (the enforcement layer denies on it), and
``allow`` is forced to false whenever ``deny`` is not empty (deny wins).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from app.errors import PolicyError


class Finding(BaseModel):
    """One denial, warning or audit note: the rule's code, a message and the fix.

    Rules may add fields (``vulnerability``, ``mode``, ``exemptions``...); they are kept.
    """

    model_config = ConfigDict(frozen=True, extra="allow")

    code: str = Field(min_length=1)
    message: str
    fix: str | None = None
    image: str | None = None


class PolicyDecision(BaseModel):
    """``{"allow", "deny", "warn", ...}`` as the default library returns it."""

    model_config = ConfigDict(frozen=True, extra="allow")

    allow: bool
    deny: list[Finding] = Field(default_factory=list)
    warn: list[Finding] = Field(default_factory=list)
    audit: list[Finding] = Field(default_factory=list)
    mode: str = "enforce"
    exemptions: list[str] = Field(default_factory=list)
    exempted: list[Finding] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)

    @classmethod
    def from_result(cls, value: Any, *, document: str) -> PolicyDecision:
        """Parse an engine result for ``document``; PolicyError when it breaks the contract."""
        if not isinstance(value, dict) or not isinstance(value.get("allow"), bool):
            raise PolicyError(
                f"{document} must be an object with a boolean 'allow', got {_preview(value)}",
                code="policy.contract",
            )
        try:
            decision = cls.model_validate(value)
        except ValidationError as e:
            first = e.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise PolicyError(
                f"{document} breaks the decision contract at {where}: {first['msg']}",
                code="policy.contract",
            ) from e
        if decision.deny and decision.allow:
            decision = decision.model_copy(update={"allow": False})
        return decision

    @property
    def codes(self) -> list[str]:
        """The codes of the denials, for audit records and metric labels."""
        return [finding.code for finding in self.deny]


def _preview(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."
