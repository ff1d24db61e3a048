"""Keyless identities: who must have signed, and what a Fulcio certificate says it is.

A ``KeylessIdentity`` names a certificate subject (its SAN: an email, a URI or a Sigstore
other name) and an OIDC issuer, each exact or an RE2 regular expression matching the whole
value (``app.verify.patterns``). ``certificate_identity`` reads both from a Fulcio
certificate (fulcio ``docs/oid-info.md``); ``KeylessIdentity.match`` accepts or refuses it.
Both keyless verifiers (``app.verify.keyless`` for bundles, ``app.verify.keyless_legacy``
for cosign ``.sig`` layers) apply the same rule.
"""

from __future__ import annotations

from cryptography import x509
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from app.errors import InputError, VerificationError
from app.verify.patterns import compile_identity_pattern

# Fulcio certificate extensions (fulcio docs/oid-info.md).
OIDC_ISSUER_V1 = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.1")  # raw string
OIDC_ISSUER_V2 = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.8")  # DER UTF8String
SIGSTORE_OTHERNAME = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.7")  # DER UTF8String


class KeylessIdentity(BaseModel):
    """Who must have signed: certificate subject (SAN) and OIDC issuer.

    Give ``subject`` or ``subject_regex``, and ``issuer`` or ``issuer_regex``. A regular
    expression is RE2 syntax and must match the whole value (``app.verify.patterns``): an
    unanchored search would let ``https://github.com/org/`` match
    ``https://evil.example/?https://github.com/org/``. Constructing one with a pattern RE2
    refuses, or one that is too long, raises ``InputError`` (``input.invalid_pattern``).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    subject: str | None = None
    subject_regex: str | None = None
    issuer: str | None = None
    issuer_regex: str | None = None

    @model_validator(mode="after")
    def _one_of_each(self) -> KeylessIdentity:
        for name in ("subject", "issuer"):
            exact, regex = getattr(self, name), getattr(self, f"{name}_regex")
            if (exact is None) == (regex is None):
                raise ValueError(f"give exactly one of {name} and {name}_regex")
            if regex is not None:
                # InputError is not a ValueError: pydantic lets it through with its code.
                compile_identity_pattern(regex, what=_PATTERN_NAMES[name])
        return self

    def describe(self) -> str:
        subject = self.subject if self.subject is not None else f"/{self.subject_regex}/"
        issuer = self.issuer if self.issuer is not None else f"/{self.issuer_regex}/"
        return f"subject {subject} from issuer {issuer}"

    def match(self, certificate: x509.Certificate) -> tuple[str, str]:
        """The (subject, issuer) of ``certificate`` that this identity accepts.

        Raises ``VerificationError`` (code ``verify.identity_mismatch``) when no SAN or
        the issuer does not match, naming what the certificate holds.
        """
        subjects, issuer = certificate_identity(certificate)
        if issuer is None or not _matches(issuer, self.issuer, self.issuer_regex, what="issuer"):
            raise VerificationError(
                f"certificate issuer {issuer!r} does not match {self.describe()}",
                code="verify.identity_mismatch",
            )
        for subject in subjects:
            if _matches(subject, self.subject, self.subject_regex, what="subject"):
                return subject, issuer
        raise VerificationError(
            f"certificate subject {', '.join(subjects) or '(none)'} does not match "
            f"{self.describe()}",
            code="verify.identity_mismatch",
        )


_PATTERN_NAMES = {
    "subject": "certificate identity regexp",
    "issuer": "certificate OIDC issuer regexp",
}


def _matches(value: str, exact: str | None, regex: str | None, *, what: str) -> bool:
    if exact is not None:
        return value == exact
    if regex is None:
        return False
    try:
        pattern = compile_identity_pattern(regex, what=_PATTERN_NAMES[what])
    except InputError as e:
        # A stored authority from before RE2 may hold a pattern RE2 refuses: that
        # authority verifies nothing (fail closed), the others are unaffected.
        raise VerificationError(
            f"the authority's {e.message}", code="verify.invalid_pattern"
        ) from e
    return pattern.matches(value)


def _der_utf8(data: bytes) -> str:
    """Decode one DER UTF8String (tag 0x0C) and nothing else."""
    if len(data) < 2 or data[0] != 0x0C:
        raise ValueError("not a DER UTF8String")
    length, offset = data[1], 2
    if length & 0x80:
        count = length & 0x7F
        if count == 0 or count > 4 or len(data) < 2 + count:
            raise ValueError("bad DER length")
        length, offset = int.from_bytes(data[2 : 2 + count], "big"), 2 + count
    if offset + length != len(data):
        raise ValueError("DER length does not match")
    return data[offset:].decode("utf-8")


def certificate_identity(certificate: x509.Certificate) -> tuple[list[str], str | None]:
    """The SAN identities (emails, URIs, Sigstore other names) and OIDC issuer of a
    Fulcio certificate. The issuer comes from the v2 extension (DER) or else the v1 one."""
    subjects: list[str] = []
    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        san = None
    if san is not None:
        subjects += san.get_values_for_type(x509.RFC822Name)
        subjects += san.get_values_for_type(x509.UniformResourceIdentifier)
        for other in san.get_values_for_type(x509.OtherName):
            if other.type_id == SIGSTORE_OTHERNAME:
                try:
                    subjects.append(_der_utf8(other.value))
                except (ValueError, UnicodeDecodeError):
                    continue
    issuer: str | None = None
    for oid, decode in ((OIDC_ISSUER_V2, _der_utf8), (OIDC_ISSUER_V1, bytes.decode)):
        try:
            ext = certificate.extensions.get_extension_for_oid(oid).value
        except x509.ExtensionNotFound:
            continue
        if isinstance(ext, x509.UnrecognizedExtension):
            try:
                issuer = decode(ext.value)
            except (ValueError, UnicodeDecodeError):
                continue
            break
    return subjects, issuer


def parse_identity(
    *,
    subject: str | None = None,
    subject_regexp: str | None = None,
    issuer: str | None = None,
    issuer_regexp: str | None = None,
) -> KeylessIdentity:
    """A keyless identity from cosign-style fields; ``InputError`` naming what is wrong.

    Exactly one of ``subject``/``subject_regexp`` and one of ``issuer``/``issuer_regexp``;
    regular expressions are RE2 syntax, as cosign's ``--certificate-identity-regexp``, but
    must match the whole value where cosign searches (see ``app.verify.patterns``). A pattern
    RE2 refuses or one that is too long raises ``InputError`` (``input.invalid_pattern``).
    """
    for value, what in ((subject, "certificate identity"), (issuer, "certificate OIDC issuer")):
        if value is not None and not value.strip():
            raise InputError(f"keyless identity is not valid: the {what} is empty")
    try:
        return KeylessIdentity(
            subject=subject, subject_regex=subject_regexp, issuer=issuer, issuer_regex=issuer_regexp
        )
    except ValidationError as e:
        message = str(e.errors()[0].get("msg", e)).removeprefix("Value error, ")
        raise InputError(
            f"keyless identity is not valid: {message} (give --certificate-identity or "
            "--certificate-identity-regexp, and --certificate-oidc-issuer or "
            "--certificate-oidc-issuer-regexp)"
        ) from e
