"""``sealgate key``: keys held by Sealgate (generate, import, list, public, disable), and
``new-kek``, which makes the key-encryption key they are stored under.

These run in process against ``SEALGATE_DATABASE_URL`` with the configured key-encryption
key. Private keys are never printed: ``list`` shows public information, ``public`` the PEM.
``generate`` and ``import`` need ``--scope GLOB`` (repeatable): the images the key may sign,
``--scope '**'`` for every image on purpose.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from app.cli.context import open_services
from app.cli.groups import command_group
from app.cli.output import cli_errors, print_json
from app.errors import InputError

key_cli = command_group(help="Signing keys held by Sealgate (encrypted at rest).")

# The values of ``app.signing.signers.GENERATABLE``, written out so that ``--help`` does not
# load cryptography (tests/cli/test_help.py checks they agree).
ALGORITHMS = ("ecdsa-p256", "ecdsa-p384", "ed25519", "rsa-3072", "rsa-4096")


@key_cli.command("new-kek")
@cli_errors
def new_kek(
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Write it to this new file (mode 0600; an existing file is never "
            "overwritten) instead of printing it.",
        ),
    ] = None,
) -> None:
    """Make a fresh key-encryption key (base64 of 32 random bytes) for
    SEALGATE_KEY_ENCRYPTION_KEY or SEALGATE_KEY_ENCRYPTION_KEY_FILE."""
    from app.config import new_kek as fresh_kek

    kek = fresh_kek()
    if out is None:
        typer.echo(kek)
        return
    try:
        # O_EXCL: replacing a KEK would lock every key stored under it away for good.
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise InputError(f"{out} exists; a key-encryption key is never overwritten") from None
    except OSError as e:
        raise InputError(f"cannot create {out}: {e.strerror}") from e
    with os.fdopen(fd, "w") as file:
        file.write(kek + "\n")
    typer.echo(
        f"wrote a new key-encryption key to {out}; set SEALGATE_KEY_ENCRYPTION_KEY_FILE={out}",
        err=True,
    )


Scope = Annotated[
    list[str] | None,
    typer.Option(
        "--scope",
        help="Image glob the key may sign, e.g. 'ghcr.io/acme/*' (repeatable; required: "
        "'**' for every image).",
    ),
]


@key_cli.command("generate")
@cli_errors
def generate(
    name: Annotated[str, typer.Argument(help="A name for the key.")],
    algorithm: Annotated[
        str, typer.Option("--algorithm", help=f"One of {', '.join(ALGORITHMS)}.")
    ] = ALGORITHMS[0],
    scope: Scope = None,
) -> None:
    """Generate a key and store it encrypted; print its public information."""
    from app.db.session import session_scope
    from app.signing.keys import generate_key
    from app.signing.signers import parse_algorithm

    chosen = parse_algorithm(algorithm)
    with open_services() as services, session_scope(services.sessions) as session:
        info = generate_key(
            session, settings=services.settings, name=name, algorithm=chosen, scopes=scope
        )
    print_json(info.model_dump(mode="json"))


@key_cli.command("import")
@cli_errors
def import_(
    name: Annotated[str, typer.Argument(help="A name for the key.")],
    pem: Annotated[Path, typer.Option("--pem", help="PEM PKCS#8 private key file.")],
    password_env: Annotated[
        str | None,
        typer.Option("--password-env", help="Environment variable holding the PEM's password."),
    ] = None,
    scope: Scope = None,
) -> None:
    """Import a PEM private key (PKCS#8, encrypted or not) and store it encrypted."""
    from app.db.session import session_scope
    from app.limits import MAX_PEM_BYTES
    from app.signing.keys import import_key

    password: bytes | None = None
    if password_env is not None:
        value = os.environ.get(password_env)
        if value is None:
            raise InputError(f"environment variable {password_env} is not set")
        password = value.encode()
    try:
        if pem.stat().st_size > MAX_PEM_BYTES:
            raise InputError(f"{pem} is larger than {MAX_PEM_BYTES} bytes")
        data = pem.read_bytes()
    except OSError as e:
        raise InputError(f"cannot read {pem}: {e.strerror}") from e
    with open_services() as services, session_scope(services.sessions) as session:
        info = import_key(
            session,
            settings=services.settings,
            name=name,
            pem=data,
            scopes=scope,
            password=password,
        )
    print_json(info.model_dump(mode="json"))


@key_cli.command("list")
@cli_errors
def list_() -> None:
    """List keys: name, algorithm, key id, status (never private material)."""
    from app.db.session import session_scope
    from app.signing.keys import list_keys

    with open_services() as services, session_scope(services.sessions) as session:
        keys = list_keys(session)
    print_json([k.model_dump(mode="json", exclude={"public_key_pem"}) for k in keys])


@key_cli.command("public")
@cli_errors
def public(name: Annotated[str, typer.Argument(help="The key's name.")]) -> None:
    """Print the public key as PEM (usable as cosign.pub)."""
    from app.db.session import session_scope
    from app.signing.keys import get_key

    with open_services() as services, session_scope(services.sessions) as session:
        info = get_key(session, name=name)
    typer.echo(info.public_key_pem, nl=False)


@key_cli.command("set-scopes")
@cli_errors
def set_scopes(
    name: Annotated[str, typer.Argument(help="The key's name.")],
    scope: Scope = None,
) -> None:
    """Replace the images a key may sign (e.g. to narrow a key stored without scopes)."""
    from app.db.session import session_scope
    from app.signing.keys import set_key_scopes

    with open_services() as services, session_scope(services.sessions) as session:
        info = set_key_scopes(session, name=name, scopes=scope)
    print_json(info.model_dump(mode="json", exclude={"public_key_pem"}))


@key_cli.command("disable")
@cli_errors
def disable(name: Annotated[str, typer.Argument(help="The key's name.")]) -> None:
    """Stop a key from signing; its public key still verifies old signatures."""
    from app.db.session import session_scope
    from app.signing.keys import disable_key

    with open_services() as services, session_scope(services.sessions) as session:
        info = disable_key(session, name=name)
    print_json(info.model_dump(mode="json"))
