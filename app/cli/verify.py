"""``sealgate verify IMAGE``: cosign-like verification of an image's signatures.

Exactly one source of trust: ``--key FILE`` (PEM public key), ``--authority NAME`` (a
stored authority), or ``--certificate-identity[-regexp]`` with
``--certificate-oidc-issuer[-regexp]`` (keyless; ``--trusted-root`` is ``public-good`` by
default, or ``staging``, or a trusted root JSON file). Exit 0 printing a JSON list of the
verified signatures; exit 1 with one line per rejected candidate on stderr otherwise.
Runs in process with the environment's settings (registry credentials, database).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from app.cli.context import run_with_services
from app.cli.output import cli_errors, print_json
from app.errors import InputError
from app.limits import MAX_PEM_BYTES

if TYPE_CHECKING:
    from app.enforce.verify import VerificationReport
    from app.verify.keyless_identity import KeylessIdentity
    from app.verify.trusted_root import TrustedRootRef


# cosign's identity flags, shared with ``sealgate authority add``.
CertificateIdentity = Annotated[
    str | None, typer.Option("--certificate-identity", help="Exact certificate subject.")
]
CertificateIdentityRegexp = Annotated[
    str | None,
    typer.Option("--certificate-identity-regexp", help="Regexp for the whole subject."),
]
CertificateOidcIssuer = Annotated[
    str | None, typer.Option("--certificate-oidc-issuer", help="Exact OIDC issuer.")
]
CertificateOidcIssuerRegexp = Annotated[
    str | None,
    typer.Option("--certificate-oidc-issuer-regexp", help="Regexp for the whole issuer."),
]
TrustedRootOption = Annotated[
    str | None,
    typer.Option(
        "--trusted-root",
        help="public-good (default), staging, or a trusted_root.json file (keyless only).",
    ),
]


def read_key_file(path: Path) -> str:
    """The PEM text of ``path`` (``-`` reads stdin); ``InputError`` when unreadable."""
    if str(path) == "-":
        return typer.get_text_stream("stdin").read(MAX_PEM_BYTES)
    try:
        if path.stat().st_size > MAX_PEM_BYTES:
            raise InputError(f"key file {path} is larger than {MAX_PEM_BYTES} bytes")
        return path.read_text()
    except OSError as e:
        raise InputError(f"cannot read key file {path}: {e.strerror or e}") from e
    except UnicodeDecodeError as e:
        raise InputError(f"key file {path} is not PEM text") from e


def identity_from_flags(
    *,
    identity: str | None,
    identity_regexp: str | None,
    issuer: str | None,
    issuer_regexp: str | None,
) -> KeylessIdentity | None:
    """The keyless identity the cosign-style flags name, or None when none is given."""
    if all(v is None for v in (identity, identity_regexp, issuer, issuer_regexp)):
        return None
    from app.verify.keyless_identity import parse_identity

    return parse_identity(
        subject=identity, subject_regexp=identity_regexp, issuer=issuer, issuer_regexp=issuer_regexp
    )


def _verify(
    *,
    image: str,
    key_pem: str | None,
    authority: str | None,
    identity: KeylessIdentity | None,
    trusted_root: TrustedRootRef | None,
) -> VerificationReport:
    from app.enforce.verify import verify_image

    return run_with_services(
        lambda services: verify_image(
            services,
            image=image,
            key_pem=key_pem,
            authority=authority,
            identity=identity,
            trusted_root=trusted_root,
        )
    )


def verify(
    image: Annotated[str, typer.Argument(help="Image reference; a tag is resolved to its digest.")],
    key: Annotated[
        Path | None, typer.Option("--key", help="PEM public key file (cosign.pub); '-' for stdin.")
    ] = None,
    authority: Annotated[
        str | None, typer.Option("--authority", help="Name of a stored authority.")
    ] = None,
    certificate_identity: CertificateIdentity = None,
    certificate_identity_regexp: CertificateIdentityRegexp = None,
    certificate_oidc_issuer: CertificateOidcIssuer = None,
    certificate_oidc_issuer_regexp: CertificateOidcIssuerRegexp = None,
    trusted_root: TrustedRootOption = None,
) -> None:
    """Verify IMAGE's signatures; print the verified ones as JSON, or exit 1 with reasons."""
    from app.verify.trusted_root import TrustedRootRef

    identity = identity_from_flags(
        identity=certificate_identity,
        identity_regexp=certificate_identity_regexp,
        issuer=certificate_oidc_issuer,
        issuer_regexp=certificate_oidc_issuer_regexp,
    )
    report = _verify(
        image=image,
        key_pem=read_key_file(key) if key is not None else None,
        authority=authority,
        identity=identity,
        trusted_root=TrustedRootRef.resolve(trusted_root) if trusted_root else None,
    )
    if not report.verified:
        typer.echo(
            f"error: no valid signature for {report.image}@{report.digest} "
            "[verify.no_valid_signature]",
            err=True,
        )
        if not report.rejections:
            typer.echo("  no signatures found (referrers and the legacy .sig tag)", err=True)
        for rejection in report.rejections:
            where = rejection.signature_digest or rejection.source
            typer.echo(
                f"  {rejection.source} {where}: {rejection.reason} [{rejection.code}]", err=True
            )
        raise typer.Exit(1)
    print_json([s.summary() for s in report.signatures])


verify_command = cli_errors(verify)
