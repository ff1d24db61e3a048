"""Sealgate's error hierarchy: one root, one subclass per failure domain.

Every error carries a stable ``code`` (used in the HTTP body, the audit record and
metric labels) and a message a person can act on. Every code is declared once in
``app.error_codes`` with the HTTP status the API answers it with and its meaning
(``docs/errors.md``); the class only gives the default code and lets callers catch a
domain. Third-party exceptions are translated into these at the boundary with
``raise ... from e`` so that nothing else leaks to callers.
"""

from __future__ import annotations

from typing import Any, ClassVar

from app.error_codes import http_status_of


class Error(Exception):
    """Root of every error Sealgate raises on purpose.

    ``code`` is a stable, dotted identifier (``registry.not_found``) from the catalogue;
    ``details`` is an optional JSON-safe mapping shown to the caller (never secrets).
    """

    default_code: ClassVar[str] = "internal"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.details = details or {}

    @property
    def http_status(self) -> int:
        """The status the API answers with: the catalogue's for ``code``."""
        return http_status_of(self.code)

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            body["details"] = self.details
        return {"error": body}


class InputError(Error):
    """The caller sent something we cannot accept (bad reference, malformed JSON...).

    Codes ``input.*``; admission reviews (``app.k8s``) too.
    """

    default_code = "input.invalid"


class NotFoundError(Error):
    """A named object (key, authority, policy version...) does not exist."""

    default_code = "not_found"


class ConflictError(Error):
    """The request conflicts with existing state (a name already taken...)."""

    default_code = "conflict"


class AuthError(Error):
    """Missing or invalid credentials (401) or a token without the needed scope (403)."""

    default_code = "auth.unauthenticated"


class ForbiddenError(AuthError):
    default_code = "auth.forbidden"


class ConfigError(Error):
    """The service's own configuration is unusable; raised at start-up."""

    default_code = "config.invalid"


class RegistryError(Error):
    """A registry could not be reached or answered something we refuse to trust.

    The message always names the registry and, where known, the repository; the codes
    are named in ``app.oci.errors``.
    """

    default_code = "registry.error"


class EvidenceError(Error):
    """Signatures, attestations or scans attached to an image are unusable."""

    default_code = "evidence.invalid"


class VerificationError(Error):
    """A signature or bundle did not verify against the configured trust."""

    default_code = "verify.failed"


class SigningError(Error):
    """Signing could not be completed (disabled key, Sigstore refused...)."""

    default_code = "signing.failed"


class PolicyError(Error):
    """A policy did not compile, its tests failed, or the engine could not decide."""

    default_code = "policy.error"


class ScanError(Error):
    """A vulnerability report is malformed, of an unknown format, or for another image
    (``scan.wrong_image``: see ``app.scans.subject``)."""

    default_code = "scan.invalid"


class StoreError(Error):
    """The database could not be reached or refused an operation."""

    default_code = "store.unavailable"


class DeadlineError(Error):
    """A decision's deadline passed before a step finished (``deadline.registry``...)."""

    default_code = "deadline.exceeded"


class AuditError(Error):
    """The audit trail cannot be written, read or checked as asked.

    ``sealgate audit verify`` labels what it finds ``audit.<kind>``, a kind of
    ``app.audit.verification.ProblemKind``.
    """

    default_code = "audit.error"


# The push gate (app/hooks/).


class HookError(InputError):
    """A webhook body that is not an envelope of its source's format."""

    default_code = "hook.malformed"


class HookAuthError(AuthError):
    """A webhook delivery refused before its body is read (a sender outside the allow-list
    is refused with ``ForbiddenError``, code ``hook.address_refused``)."""

    default_code = "hook.unauthenticated"


class LostClaim(ConflictError):
    """An inbox event's lease ran out and another worker claimed it."""

    default_code = "inbox.claim_lost"


class ActionError(Error):
    """An action on a verdict failed; the event is retried."""

    default_code = "action.failed"


class HarborError(Error):
    """Harbor's API could not be read; the event is retried."""

    default_code = "harbor.unavailable"


class SchemaError(StoreError):
    """The database has no Sealgate schema, or not the revision this version needs.

    Run ``sealgate db upgrade``. Checked once per process (the service at start-up, each
    CLI command before it uses the store) and by ``/readyz``.
    """

    default_code = "store.not_migrated"
