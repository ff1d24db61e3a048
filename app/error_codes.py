"""The catalogue of every stable code Sealgate produces, with its HTTP status and meaning.

A code is ``domain.name`` (``registry.timeout``) or a bare domain (``not_found``); it is
the ``code`` of an HTTP error body, of a CLI error line (``[registry.timeout]``), of a
denial or failure in an audit record, and the ``code`` label of ``sealgate_errors_total``.
Every code is declared here once; ``Error.http_status`` and the API's error handlers take
the status from here, ``tests/test_error_codes.py`` checks that every code literal in
``app/`` is declared and every declaration is used, and ``docs/errors.md`` is generated
from it (``sealgate errors --markdown``).

A status of ``None`` means the code is never the code of an HTTP answer: the CLI's own
failures, the problems ``sealgate audit verify`` reports, reasons a signature was set
aside (listed in an answer's ``details.rejections``), and ``http.error``, which carries
whatever status the web framework chose.

One name per meaning: a named object that does not exist is ``not_found.<object>``; a
step that ran out of its decision's time is ``deadline.<step>``. Reason codes of the Rego
policies (``signature.missing``, ``scan.stale``...) belong to the policies and are listed
in ``policies/README.md``, not here.

Renamed codes (one name per meaning): ``verify.malformed_bundle`` is
``evidence.malformed_bundle``, ``verify.malformed_signature`` is
``evidence.malformed_signature``, ``evidence.malformed`` is ``evidence.invalid``,
``authority.not_found`` is ``not_found.authority``, ``policy.not_found`` is
``not_found.policy_version``, ``audit.not_found`` is ``not_found.audit_record``,
``policy.timeout`` is ``deadline.policy``, ``signing.no_kek`` is ``config.no_kek``,
``audit.no_kek`` is ``config.no_kek``, ``auth.force_needs_admin`` is ``auth.not_admin``,
``input.admission_too_large`` is ``input.too_large``. Audit records and decision records
written before keep the code they were written with; nothing reads them back by code, so
they were not migrated.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from itertools import groupby
from types import MappingProxyType


@dataclass(frozen=True)
class ErrorCode:
    """One stable code: the HTTP status the API answers it with, and what it means."""

    code: str
    http_status: int | None
    meaning: str

    @property
    def domain(self) -> str:
        """The part before the first dot (``registry`` of ``registry.timeout``)."""
        return self.code.partition(".")[0]


# Sorted by domain, then code; the docs are sorted the same way whatever the order here.
_CATALOGUE = (
    ErrorCode("action.failed", 502, "An action on a push verdict failed; the event is retried."),
    ErrorCode("audit.changed", None, "Audit verify: a record differs from its hash."),
    ErrorCode("audit.checkpoint", None, "Audit verify: a checkpoint does not match the chain."),
    ErrorCode("audit.cursor", 400, "A pagination cursor this service did not issue."),
    ErrorCode("audit.error", 500, "The audit trail could not be written, read or checked."),
    ErrorCode("audit.inserted", None, "Audit verify: a record was inserted into the chain."),
    ErrorCode("audit.removed", None, "Audit verify: a record was removed from the chain."),
    ErrorCode(
        "audit.since", 400, "A time that is neither a date, a date-time nor a span (7d, 24h)."
    ),
    ErrorCode("auth.expired_token", 401, "The bearer token has expired."),
    ErrorCode("auth.forbidden", 403, "The credentials do not allow this request."),
    ErrorCode("auth.invalid_token", 401, "The bearer token is not one this service issued."),
    ErrorCode("auth.not_admin", 403, "The request needs an administrator token."),
    ErrorCode(
        "auth.out_of_scope", 403, "The token's scopes do not cover this action on this image."
    ),
    ErrorCode("auth.revoked_token", 401, "The bearer token was revoked."),
    ErrorCode("auth.unauthenticated", 401, "No usable credentials were sent."),
    ErrorCode("cli.remote_error", None, "The remote Sealgate refused the request without a code."),
    ErrorCode("cli.unreachable", None, "The Sealgate named by SEALGATE_URL cannot be reached."),
    ErrorCode("config.invalid", 500, "Sealgate's own configuration is unusable."),
    ErrorCode(
        "config.no_kek",
        503,
        "No key-encryption key is configured (SEALGATE_KEY_ENCRYPTION_KEY), and one is needed.",
    ),
    ErrorCode(
        "config.tls", 500, "The --tls-cert/--tls-key pair does not load (missing, not PEM...)."
    ),
    ErrorCode(
        "config.wrong_kek", 500, "At start-up: the key-encryption key does not open stored keys."
    ),
    ErrorCode("conflict", 409, "The request conflicts with existing state."),
    ErrorCode("conflict.key", 409, "A signing key with that name already exists."),
    ErrorCode("deadline.exceeded", 504, "A decision's deadline passed before a step finished."),
    ErrorCode(
        "deadline.policy", 504, "The policy engine did not decide within the decision's time."
    ),
    ErrorCode("deadline.registry", 504, "A registry did not answer within the decision's time."),
    ErrorCode(
        "deadline.store", 504, "Sealgate's database did not answer within the decision's time."
    ),
    ErrorCode(
        "evidence.invalid",
        422,
        "A signed payload (simple signing, in-toto statement) is not well formed.",
    ),
    ErrorCode("evidence.malformed_bundle", 422, "A Sigstore bundle cannot be read."),
    ErrorCode(
        "evidence.malformed_referrer", 422, "A signature referrer has not exactly one bundle layer."
    ),
    ErrorCode(
        "evidence.malformed_signature",
        422,
        "A legacy (.sig tag) signature or its annotations cannot be read.",
    ),
    ErrorCode("evidence.scan", 422, "The stored scan of the image cannot be read."),
    ErrorCode("evidence.too_large", 422, "A bundle or signature payload is over its size cap."),
    ErrorCode("evidence.too_many", None, "More signatures than are read (32); the rest were not."),
    ErrorCode(
        "evidence.unsupported_media_type", 422, "A Sigstore bundle of a media type not supported."
    ),
    ErrorCode("evidence.wrong_subject", 422, "A signature referrer names another image."),
    ErrorCode("harbor.unavailable", 502, "Harbor's API could not be read; the event is retried."),
    ErrorCode(
        "hook.address_refused", 403, "A webhook delivery from outside the hook's allow-list."
    ),
    ErrorCode("hook.malformed", 400, "A webhook body that is not its source's format."),
    ErrorCode("hook.too_many_events", 400, "A webhook body with more events than are taken."),
    ErrorCode(
        "hook.unauthenticated",
        401,
        "A webhook delivery without the hook's secret (or the hook has none configured).",
    ),
    ErrorCode(
        "http.error", None, "The web framework refused the request; the answer has its status."
    ),
    ErrorCode("inbox.claim_lost", 409, "An inbox event's lease ran out; another worker has it."),
    ErrorCode(
        "input.admission_review",
        400,
        "An AdmissionReview that is not JSON, of another kind or version, or has no uid.",
    ),
    ErrorCode("input.annotation", 400, "A signature annotation that is not a short KEY=VALUE."),
    ErrorCode("input.authority_scope", 400, "A new trust authority names no image scope."),
    ErrorCode("input.invalid", 400, "The request is not valid (the message says what is wrong)."),
    ErrorCode("input.invalid_key", 400, "An authority's public key is not a supported PEM key."),
    ErrorCode(
        "input.invalid_pattern", 400, "An identity regexp RE2 refuses, or over 1024 characters."
    ),
    ErrorCode("input.invalid_reference", 400, "An image reference or target that is not valid."),
    ErrorCode("input.k8s_name", 400, "A namespace or Service name that is not an RFC 1123 label."),
    ErrorCode("input.key_algorithm", 400, "An unknown key algorithm to generate."),
    ErrorCode(
        "input.key_name", 400, "A key name that is not 1-128 letters, digits, '.', '_', '-'."
    ),
    ErrorCode("input.key_password", 400, "An encrypted key without its password, or the reverse."),
    ErrorCode("input.key_pem", 400, "A private key that is not readable PEM."),
    ErrorCode("input.key_scope", 400, "A new signing key names no image scope."),
    ErrorCode("input.key_unsupported", 400, "A key of a type, curve or size not supported."),
    ErrorCode("input.layout", 400, "Not a usable OCI image layout."),
    ErrorCode(
        "input.layout_tampered", 400, "A layout blob does not match its descriptor (details.blob)."
    ),
    ErrorCode("input.method_not_allowed", 405, "The route does not take this HTTP method."),
    ErrorCode(
        "input.platform", 400, "A platform that is not os/arch[/variant], or not in the index."
    ),
    ErrorCode("input.sign_format", 400, "A signature format other than bundle, legacy or both."),
    ErrorCode("input.sign_method", 400, "Not exactly one of a key name and an identity token."),
    ErrorCode(
        "input.signed_identity", 400, "An unknown signed-identity rule, or a bad remap prefix."
    ),
    ErrorCode(
        "input.too_large", 413, "A request body over its limit (16 MiB; an AdmissionReview 3 MiB)."
    ),
    ErrorCode("input.unstorable", 400, "A value the database cannot store (a NUL character...)."),
    ErrorCode(
        "input.unsupported_media_type", 415, "A request body of a content type not taken here."
    ),
    ErrorCode(
        "internal", 500, "An unexpected failure; the service log has it under the request id."
    ),
    ErrorCode("not_found", 404, "No such route or object."),
    ErrorCode("not_found.audit_record", 404, "No audit record has that sequence number."),
    ErrorCode("not_found.authority", 404, "No trust authority has that name."),
    ErrorCode("not_found.key", 404, "No signing key has that name."),
    ErrorCode("not_found.policy_version", 404, "No policy version has that number."),
    ErrorCode(
        "policy.busy", 422, "No policy engine worker became free within the decision's time."
    ),
    ErrorCode("policy.compile", 422, "The policy bundle does not compile."),
    ErrorCode(
        "policy.compile_limit", 422, "Compiling and testing a bundle passed its time or memory."
    ),
    ErrorCode("policy.contract", 422, "A policy decision that breaks the decision contract."),
    ErrorCode("policy.data", 422, "The policy's data or parameters are not usable."),
    ErrorCode("policy.engine", 422, "The policy engine failed or is not healthy."),
    ErrorCode("policy.engine_missing", 422, "The embedded OPA engine is not installed."),
    ErrorCode("policy.error", 422, "The policy engine could not decide."),
    ErrorCode(
        "policy.network_builtin",
        422,
        "A bundle calls http.send, net.lookup_ip_addr or opa.runtime.",
    ),
    ErrorCode("policy.tests_failed", 422, "The policy bundle's own tests failed."),
    ErrorCode("policy.undefined", 422, "The policy does not define a decision document asked for."),
    ErrorCode(
        "policy.version_conflict", 409, "Another policy version was published at the same time."
    ),
    ErrorCode("registry.conflict", 502, "The registry refused a write as conflicting."),
    ErrorCode(
        "registry.digest_mismatch", 502, "Content the registry served does not match its digest."
    ),
    ErrorCode("registry.error", 502, "A registry failed in a way not named by another code."),
    ErrorCode("registry.forbidden", 502, "The registry answered 403 to Sealgate's credentials."),
    ErrorCode(
        "registry.invalid_manifest", 502, "A manifest that is not valid, or not of its kind."
    ),
    ErrorCode(
        "registry.not_allowed",
        403,
        "A registry outside SEALGATE_REGISTRY_ALLOWLIST, or at a link-local address.",
    ),
    ErrorCode("registry.not_found", 404, "The registry has no such repository, tag or digest."),
    ErrorCode("registry.protocol", 502, "The registry answered outside the distribution protocol."),
    ErrorCode("registry.rate_limited", 503, "The registry is rate-limiting Sealgate (429)."),
    ErrorCode(
        "registry.redirect_refused", 502, "A redirect Sealgate does not follow (to HTTP, too many)."
    ),
    ErrorCode("registry.server_error", 502, "The registry answered with a server error (5xx)."),
    ErrorCode("registry.timeout", 504, "The registry did not answer in time, or stopped half-way."),
    ErrorCode("registry.tls_untrusted", 502, "The registry's TLS certificate is not trusted."),
    ErrorCode("registry.too_large", 502, "A registry answer larger than Sealgate reads."),
    ErrorCode("registry.truncated", 502, "A registry answer shorter than it said it was."),
    ErrorCode("registry.unauthorized", 502, "The registry refused Sealgate's credentials (401)."),
    ErrorCode("registry.unreachable", 502, "The registry could not be reached."),
    ErrorCode(
        "scan.invalid", 400, "A scan cannot be fetched as asked (a repository without project)."
    ),
    ErrorCode("scan.malformed", 400, "A vulnerability report that is not valid for its format."),
    ErrorCode("scan.too_large", 413, "A report over the byte limit or SEALGATE_MAX_SCAN_FINDINGS."),
    ErrorCode("scan.unknown_format", 400, "A report in no supported format."),
    ErrorCode("scan.wrong_image", 422, "A report for another image than the one it is filed for."),
    ErrorCode("signing.denied_by_policy", 403, "The sign gate's policy denies signing the image."),
    ErrorCode("signing.failed", 422, "Signing could not be completed."),
    ErrorCode("signing.identity_token", 422, "The OIDC identity token is not usable."),
    ErrorCode("signing.index", 422, "An image index entry without a digest."),
    ErrorCode(
        "signing.index_too_large", 422, "An index lists more manifests than --recursive signs."
    ),
    ErrorCode("signing.key_corrupt", 422, "A stored signing key is corrupt."),
    ErrorCode(
        "signing.key_decrypt", 422, "A stored key does not decrypt with the key-encryption key."
    ),
    ErrorCode("signing.key_disabled", 422, "The signing key is disabled and no longer signs."),
    ErrorCode("signing.key_out_of_scope", 403, "The signing key's scopes do not cover the image."),
    ErrorCode("signing.sigstore", 422, "Sigstore (Fulcio, Rekor) refused or failed to sign."),
    ErrorCode("signing.statement", 400, "An attestation to sign that is not an in-toto statement."),
    ErrorCode("signing.trust_config", 422, "The Sigstore trust config cannot be read or used."),
    ErrorCode(
        "store.not_migrated",
        503,
        "The database is not at this version's schema: run sealgate db upgrade.",
    ),
    ErrorCode("store.unavailable", 503, "Sealgate's database could not be reached or failed."),
    ErrorCode("verify.bad_envelope", 422, "A DSSE envelope not of one in-toto signature."),
    ErrorCode("verify.bad_payload", 422, "A signed payload of another type than simple signing."),
    ErrorCode("verify.bad_signature", 422, "The signature does not verify with the trusted keys."),
    ErrorCode(
        "verify.digest_mismatch", 422, "The signature is over another digest than the image's."
    ),
    ErrorCode("verify.failed", 422, "A signature did not verify against the configured trust."),
    ErrorCode(
        "verify.identity_mismatch", 422, "Signed for another identity than the authority accepts."
    ),
    ErrorCode(
        "verify.identity_missing", 422, "The payload names no repository; the authority needs one."
    ),
    ErrorCode("verify.invalid_pattern", 422, "A stored authority's identity regexp RE2 refuses."),
    ErrorCode("verify.keyless_failed", 422, "A keyless signature does not verify."),
    ErrorCode("verify.no_authority", None, "No trust authority covers the image."),
    ErrorCode("verify.no_keys", 422, "An authority with no trusted keys to verify with."),
    ErrorCode("verify.no_tlog", 422, "A legacy keyless signature without its Rekor entry."),
    ErrorCode(
        "verify.no_valid_signature", 422, "No signature verified (details.rejections says why)."
    ),
    ErrorCode("verify.out_of_scope", 422, "The authority's scopes do not cover the image."),
    ErrorCode("verify.trusted_root", 422, "A Sigstore trusted root that cannot be used."),
    ErrorCode(
        "verify.unsupported_key", 422, "An Ed25519 key cannot verify a signature over a digest."
    ),
    ErrorCode(
        "verify.untrusted_chain", 422, "A certificate that does not chain to a trusted Fulcio CA."
    ),
    ErrorCode("verify.wrong_kind", 422, "A keyless signature for a key authority, or the reverse."),
)

CODES: Mapping[str, ErrorCode] = MappingProxyType({c.code: c for c in _CATALOGUE})

# Answered for a code not in the catalogue (tests/test_error_codes.py keeps there being none).
_FALLBACK_STATUS = 500


def http_status_of(code: str) -> int:
    """The HTTP status the API answers ``code`` with (500 for a code with none)."""
    entry = CODES.get(code)
    if entry is None or entry.http_status is None:
        return _FALLBACK_STATUS
    return entry.http_status


def _by_domain(codes: Iterable[ErrorCode]) -> list[tuple[str, list[ErrorCode]]]:
    ordered = sorted(codes, key=lambda c: (c.domain, c.code))
    return [(domain, list(group)) for domain, group in groupby(ordered, key=lambda c: c.domain)]


def _status_text(entry: ErrorCode) -> str:
    return str(entry.http_status) if entry.http_status is not None else "-"


def render_markdown(codes: Iterable[ErrorCode] | None = None) -> str:
    """``docs/errors.md``: one table per domain, code | HTTP status | meaning."""
    lines = [
        "# Error codes",
        "",
        "<!-- Generated from app/error_codes.py: sealgate errors --markdown > docs/errors.md -->",
        "",
        'Every code Sealgate produces: in an HTTP error body (`{"error": {"code", "message"}}`),',
        "a CLI error line (`[registry.timeout]`), a denial or failure in an audit record, and",
        "the `code` label of `sealgate_errors_total`. The status is the one the API answers",
        "with; `-` marks a code that is never an answer's own (CLI-only failures, problems",
        "`sealgate audit verify` reports, reasons a signature was set aside, listed in an",
        "answer's `details.rejections`, and `http.error`, which keeps the web framework's",
        "status). Reason codes of the Rego policies are in `policies/README.md`.",
    ]
    for domain, entries in _by_domain(CODES.values() if codes is None else codes):
        lines += ["", f"## {domain}", "", "| code | HTTP status | meaning |", "|---|---|---|"]
        lines += [f"| `{e.code}` | {_status_text(e)} | {e.meaning} |" for e in entries]
    return "\n".join(lines) + "\n"


def render_text(codes: Iterable[ErrorCode] | None = None) -> str:
    """The catalogue as plain text for a terminal: code, status and meaning per line."""
    entries = sorted(CODES.values() if codes is None else codes, key=lambda c: (c.domain, c.code))
    width = max((len(e.code) for e in entries), default=0)
    return "".join(f"{e.code:<{width}}  {_status_text(e):>3}  {e.meaning}\n" for e in entries)
