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
    # input.invalid_pattern: an identity regexp RE2 refuses, or longer than 1024 characters.
    http_status = 400
    # Admission (app/k8s): input.admission_review (an AdmissionReview that cannot be answered:
    # not JSON, another kind or apiVersion, no request or uid, wrong JSON types),
    # input.admission_too_large (a body over 3 MiB), input.k8s_name (a namespace or Service
    # name that is not an RFC 1123 label).


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
    # config.tls: the --tls-cert/--tls-key pair does not load (missing, not PEM, key mismatch).


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
    # verify.invalid_pattern: a stored authority's identity regexp RE2 refuses.
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
    # policy.network_builtin: a bundle being published calls http.send, net.lookup_ip_addr
    # or opa.runtime; policy.compile_limit: its compile-and-test worker passed its limits.
    http_status = 422


class ScanError(Error):
    """A vulnerability report is malformed, of an unknown format, or for another image.

    ``scan.wrong_image`` (422): a digest the report names is not the image's, or it names
    other repositories only and none of the image's digests (``app.scans.subject``).
    """

    default_code = "scan.invalid"
    # scan.too_large (413): over the byte limit or SEALGATE_MAX_SCAN_FINDINGS findings.
    http_status = 400


class StoreError(Error):
    """The database could not be reached or refused an operation."""

    default_code = "store.unavailable"
    http_status = 503


class DeadlineError(Error):
    """A decision's deadline passed before a step finished (``deadline.registry``...)."""

    default_code = "deadline.exceeded"
    http_status = 504


class AuditError(Error):
    """The audit trail cannot be written, read or checked as asked.

    Codes: ``audit.no_kek`` (503: checkpoints need the key-encryption key),
    ``audit.not_found`` (404: no record with that sequence number),
    ``audit.cursor`` (400: a pagination cursor this service did not issue),
    ``audit.since`` (400: a time that is neither a date, a date-time nor ``7d``/``24h``).
    ``sealgate audit verify`` labels what it finds ``audit.changed``, ``audit.removed``,
    ``audit.inserted`` or ``audit.checkpoint`` (``app.audit.verification.ProblemKind``).
    """

    default_code = "audit.error"
    http_status = 500


# The push gate (app/hooks/).


class HookError(InputError):
    """A webhook body that is not an envelope of its source's format (400).

    Codes: ``hook.malformed`` (not JSON, or not the format's shape), ``hook.too_many_events``.
    """

    default_code = "hook.malformed"


class HookAuthError(AuthError):
    """A webhook delivery refused before its body is read. Codes: ``hook.unauthenticated``
    (401: wrong or missing secret, or none configured), ``hook.address_refused`` (403, raised
    as ``ForbiddenError`` with that code: sender outside the allow-list)."""

    default_code = "hook.unauthenticated"


class LostClaim(ConflictError):
    """An inbox event's lease ran out and another worker claimed it (``inbox.claim_lost``)."""

    default_code = "inbox.claim_lost"


class ActionError(Error):
    """An action on a verdict failed (``action.failed``); the event is retried."""

    default_code = "action.failed"
    http_status = 502


class HarborError(Error):
    """Harbor's API could not be read (``harbor.unavailable``); the event is retried."""

    default_code = "harbor.unavailable"
    http_status = 502


class SchemaError(StoreError):
    """The database has no Sealgate schema, or not the revision this version needs.

    ``store.not_migrated``: run ``sealgate db upgrade``. Checked once per process (the
    service at start-up, each CLI command before it uses the store) and by ``/readyz``.
    """

    default_code = "store.not_migrated"
    http_status = 503
