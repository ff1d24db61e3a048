"""Sealgate's error hierarchy: one root, one subclass per failure domain.

Every error carries a stable ``code`` (used in the HTTP body, the audit record and
metric labels), a message a person can act on, and the HTTP status the API answers
with. Third-party exceptions are translated into these at the boundary with
``raise ... from e`` so that nothing else leaks to callers.
"""

from __future__ import annotations

from typing import Any, ClassVar


class Error(Exception):
    """Root of every error Sealgate raises on purpose.

    ``code`` is a stable, dotted identifier (``registry.not_found``); ``details`` is an
    optional JSON-safe mapping shown to the caller (never secrets).
    """

    default_code: ClassVar[str] = "internal"
    http_status: int = 500

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        details: dict[str, Any] | None = None,
        http_status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.details = details or {}
        if http_status is not None:
            self.http_status = http_status

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            body["details"] = self.details
        return {"error": body}


class InputError(Error):
    """The caller sent something we cannot accept (bad reference, malformed JSON...)."""

    default_code = "input.invalid"
    http_status = 400


class NotFoundError(Error):
    """A named object (key, authority, policy version...) does not exist."""

    default_code = "not_found"
    http_status = 404


class ConflictError(Error):
    """The request conflicts with existing state (a name already taken...)."""

    default_code = "conflict"
    http_status = 409


class AuthError(Error):
    """Missing or invalid credentials (401) or a token without the needed scope (403)."""

    default_code = "auth.unauthenticated"
    http_status = 401


class ForbiddenError(AuthError):
    default_code = "auth.forbidden"
    http_status = 403


class ConfigError(Error):
    """The service's own configuration is unusable; raised at start-up."""

    default_code = "config.invalid"
    http_status = 500


class RegistryError(Error):
    """A registry could not be reached or answered something we refuse to trust.

    The message always names the registry and, where known, the repository.
    """

    default_code = "registry.error"
    http_status = 502


class EvidenceError(Error):
    """Signatures, attestations or scans attached to an image are unusable."""

    default_code = "evidence.invalid"
    http_status = 422


class VerificationError(Error):
    """A signature or bundle did not verify against the configured trust."""

    default_code = "verify.failed"
    http_status = 422


class SigningError(Error):
    """Signing could not be completed (disabled key, Sigstore refused...)."""

    default_code = "signing.failed"
    http_status = 422


class PolicyError(Error):
    """A policy did not compile, its tests failed, or the engine could not decide."""

    default_code = "policy.error"
    http_status = 422


class ScanError(Error):
    """A vulnerability report is malformed, of an unknown format, or for another image.

    ``scan.wrong_image`` (422): a digest the report names is not the image's, or it names
    other repositories only and none of the image's digests (``app.scans.subject``).
    """

    default_code = "scan.invalid"
    http_status = 400


class StoreError(Error):
    """The database could not be reached or refused an operation."""

    default_code = "store.unavailable"
    http_status = 503


class SchemaError(StoreError):
    """The database has no Sealgate schema, or not the revision this version needs.

    ``store.not_migrated``: run ``sealgate db upgrade``. Checked once per process (the
    service at start-up, each CLI command before it uses the store) and by ``/readyz``.
    """

    default_code = "store.not_migrated"
    http_status = 503
