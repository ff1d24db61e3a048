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
    """The caller sent something we cannot accept (bad reference, malformed JSON...).

    Codes include ``input.key_scope`` (a new key names no image scope),
    ``input.authority_scope`` (a new authority names none), ``input.signed_identity``
    (an unknown signed-identity rule or a bad remap prefix), ``input.platform`` (a
    ``--platform`` that is not os/arch[/variant] or that an index does not offer),
    ``input.layout`` (not a usable OCI image layout) and ``input.layout_tampered`` (a blob of
    a layout whose size or digest does not match its descriptor; ``details.blob`` names it).
    """

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
    """A signature or bundle did not verify against the configured trust.

    Codes include ``verify.identity_mismatch`` (signed for another repository than the
    authority accepts) and ``verify.identity_missing`` (the payload names no repository and
    the authority requires one).
    """

    default_code = "verify.failed"
    http_status = 422


class SigningError(Error):
    """Signing could not be completed (disabled key, Sigstore refused...).

    ``signing.key_out_of_scope`` (403): the key's scopes do not cover the image.
    """

    default_code = "signing.failed"
    http_status = 422


class PolicyError(Error):
    """A policy did not compile, its tests failed, or the engine could not decide."""

    default_code = "policy.error"
    http_status = 422


class ScanError(Error):
    """A vulnerability report is malformed, of an unknown format, or for another image."""

    default_code = "scan.invalid"
    http_status = 400


class StoreError(Error):
    """The database could not be reached or refused an operation."""

    default_code = "store.unavailable"
    http_status = 503


class DeadlineError(Error):
    """A decision's deadline passed before a step finished (``deadline.registry``...)."""

    default_code = "deadline.exceeded"
    http_status = 504
