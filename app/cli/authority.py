"""``sealgate authority``: add, list, show and remove stored authorities (trust configuration).

``add NAME --key FILE [--key FILE ...]`` makes a key authority (each file may hold several
PEM public keys); ``add NAME --certificate-identity[-regexp] X
--certificate-oidc-issuer[-regexp] Y [--trusted-root public-good|staging|FILE]`` a keyless
one. ``--scope GLOB`` (repeatable) names the images it vouches for and is required
(``--scope '**'`` for every image on purpose). ``--signed-identity`` says which repository a
signature must have been made for (``match-repository`` by default, ``any``, or ``remap``
with ``--remap-identity PREFIX=SIGNED_PREFIX``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from app.cli.context import open_services
from app.cli.groups import command_group
from app.cli.output import cli_errors, print_json
from app.cli.verify import (
    CertificateIdentity,
    CertificateIdentityRegexp,
    CertificateOidcIssuer,
    CertificateOidcIssuerRegexp,
    TrustedRootOption,
    identity_from_flags,
    read_key_file,
)

authority_cli = command_group(
    help="Authorities: the keys and keyless identities trusted to sign images."
)


@authority_cli.command("add")
@cli_errors
def add(
    name: Annotated[str, typer.Argument(help="A name for the authority.")],
    key: Annotated[
        list[Path] | None,
        typer.Option("--key", help="PEM public key file (repeatable; a file may hold several)."),
    ] = None,
    certificate_identity: CertificateIdentity = None,
    certificate_identity_regexp: CertificateIdentityRegexp = None,
    certificate_oidc_issuer: CertificateOidcIssuer = None,
    certificate_oidc_issuer_regexp: CertificateOidcIssuerRegexp = None,
    trusted_root: TrustedRootOption = None,
    scope: Annotated[
        list[str] | None,
        typer.Option(
            "--scope",
            help="Image glob it vouches for, e.g. 'ghcr.io/acme/*' (repeatable; required: "
            "'**' for every image).",
        ),
    ] = None,
    signed_identity: Annotated[
        str | None,
        typer.Option(
            "--signed-identity",
            help="Repository a signature must be made for: match-repository (default: the "
            "one verified), remap (also --remap-identity), any (not checked, as cosign).",
        ),
    ] = None,
    remap_identity: Annotated[
        list[str] | None,
        typer.Option(
            "--remap-identity",
            help="PREFIX=SIGNED_PREFIX: images under PREFIX may carry signatures made for "
            "SIGNED_PREFIX (mirrors, copies; repeatable).",
        ),
    ] = None,
) -> None:
    """Add an authority and print it as JSON.

    Give --scope '**' for an authority that vouches for every image: no scope is refused.
    """
    from app.db.session import session_scope
    from app.verify.identity import SignedIdentityRule
    from app.verify.trust import new_authority, save_authority
    from app.verify.trusted_root import TrustedRootRef

    rule = SignedIdentityRule.parse(signed_identity, remap_identity or [])
    identity = identity_from_flags(
        identity=certificate_identity,
        identity_regexp=certificate_identity_regexp,
        issuer=certificate_oidc_issuer,
        issuer_regexp=certificate_oidc_issuer_regexp,
    )
    authority = new_authority(
        name=name,
        keys=[read_key_file(k) for k in key] if key else None,
        identity=identity,
        trusted_root=TrustedRootRef.resolve(trusted_root) if trusted_root else None,
        scopes=scope,
        signed_identity=rule,
    )
    with open_services() as services, session_scope(services.sessions) as session:
        print_json(save_authority(session, authority).to_json())


@authority_cli.command("list")
@cli_errors
def list_() -> None:
    """List authorities as JSON (public keys, identities, scopes)."""
    from app.db.session import session_scope
    from app.verify.trust import list_authorities

    with open_services() as services, session_scope(services.sessions) as session:
        print_json([a.to_json() for a in list_authorities(session)])


@authority_cli.command("show")
@cli_errors
def show(name: Annotated[str, typer.Argument(help="The authority's name.")]) -> None:
    """Print one authority as JSON."""
    from app.db.session import session_scope
    from app.verify.trust import get_authority

    with open_services() as services, session_scope(services.sessions) as session:
        print_json(get_authority(session, name).to_json())


@authority_cli.command("remove")
@cli_errors
def remove(name: Annotated[str, typer.Argument(help="The authority's name.")]) -> None:
    """Remove an authority; signatures it vouched for no longer count."""
    from app.db.session import session_scope
    from app.verify.trust import remove_authority

    with open_services() as services, session_scope(services.sessions) as session:
        remove_authority(session, name)
    typer.echo(f"removed authority {name}", err=True)
