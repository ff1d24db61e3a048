"""``sealgate sign``: sign an image with a stored key or keylessly with Sigstore.

With ``SEALGATE_URL`` set the request goes to the service (``POST /v1/signatures`` with
``SEALGATE_TOKEN``); otherwise the same domain function runs in process as a local
administrator. Either way the JSON printed names the image digest, the signature manifest
digests and the formats written.
"""

from __future__ import annotations

import getpass
import os
from typing import TYPE_CHECKING, Annotated, Any

import typer

from app.cli.context import run_with_services
from app.cli.output import cli_errors, print_json
from app.errors import AuthError, Error, InputError, SigningError

if TYPE_CHECKING:
    from app.enforce.sign import SignResult

REMOTE_TIMEOUT = 120.0


def _identity_token(given: str | None) -> str:
    """The OIDC token: ``--identity-token``, ``SIGSTORE_ID_TOKEN``, or the CI's ambient one."""
    if given:
        return given
    ambient = os.environ.get("SIGSTORE_ID_TOKEN")
    if ambient:
        return ambient
    try:
        from sigstore.oidc import detect_credential

        detected = detect_credential()
    except Exception as e:  # sigstore-python's detectors raise their own error types
        raise SigningError(f"could not detect an ambient OIDC token: {e}") from e
    if not detected:
        raise InputError(
            "--sigstore needs an OIDC identity token: pass --identity-token, set "
            "SIGSTORE_ID_TOKEN, or run where one can be detected (e.g. GitHub Actions)"
        )
    return str(detected)


def _sign_in_process(**request: Any) -> SignResult:
    from app.auth.scopes import Scope
    from app.auth.tokens import Principal
    from app.enforce.sign import sign_image

    principal = Principal(name=f"local:{getpass.getuser()}", scopes=(Scope.parse("admin"),))
    return run_with_services(lambda services: sign_image(services, principal=principal, **request))


def _sign_remote(url: str, body: dict[str, Any]) -> dict[str, Any]:
    import httpx

    token = os.environ.get("SEALGATE_TOKEN")
    if not token:
        raise AuthError("SEALGATE_URL is set but SEALGATE_TOKEN is not")
    try:
        response = httpx.post(
            url.rstrip("/") + "/v1/signatures",
            json=body,
            headers={"Authorization": f"Bearer {token}"},
            timeout=REMOTE_TIMEOUT,
        )
    except httpx.HTTPError as e:
        raise Error(f"cannot reach Sealgate at {url}: {e}", code="cli.unreachable") from e
    try:
        answer: dict[str, Any] = response.json()
    except ValueError:
        answer = {}
    if response.status_code >= 400:
        error = answer.get("error")
        if not isinstance(error, dict):
            error = {}
        raise Error(
            str(error.get("message") or f"HTTP {response.status_code}"),
            code=str(error.get("code") or "cli.remote_error"),
        )
    return answer


def sign(
    image: Annotated[str, typer.Argument(help="Image reference; a tag is resolved to its digest.")],
    key: Annotated[str | None, typer.Option("--key", help="Name of a stored key.")] = None,
    sigstore: Annotated[
        bool, typer.Option("--sigstore", help="Sign keylessly with Sigstore (Fulcio + Rekor).")
    ] = False,
    identity_token: Annotated[
        str | None,
        typer.Option("--identity-token", help="OIDC token for --sigstore [SIGSTORE_ID_TOKEN]."),
    ] = None,
    sig_format: Annotated[
        str, typer.Option("--format", help="bundle (cosign v3), legacy (.sig tag) or both.")
    ] = "bundle",
    annotation: Annotated[
        list[str] | None,
        typer.Option(
            "--annotation",
            "-a",
            metavar="<key=value>",
            help="Added to the signed payload (repeatable).",
        ),
    ] = None,
    recursive: Annotated[
        bool, typer.Option("--recursive", help="On an index, also sign every manifest it lists.")
    ] = False,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Admins only: sign although the policy's sign entry point denies "
            "(recorded as forced).",
        ),
    ] = False,
) -> None:
    """Sign IMAGE with --key NAME or --sigstore; print what was written as JSON.

    The policy's sign entry point decides first (the sign gate): a denial prints the
    reasons and writes nothing, unless an admin passes --force.
    """
    from app.enforce.sign import parse_annotations, parse_formats

    if (key is None) == (not sigstore):
        raise InputError("give exactly one of --key NAME or --sigstore")
    if identity_token and not sigstore:
        raise InputError("--identity-token goes with --sigstore")
    formats = parse_formats(sig_format)
    annotations = parse_annotations(annotation or [])
    token = _identity_token(identity_token) if sigstore else None
    url = os.environ.get("SEALGATE_URL")
    if url:
        body: dict[str, Any] = {
            "image": image,
            "format": sig_format,
            "annotations": annotations,
            "recursive": recursive,
            "force": force,
        }
        if key is not None:
            body["key"] = key
        if token is not None:
            body["identity_token"] = token
        print_json(_sign_remote(url, body))
        return
    result = _sign_in_process(
        image=image,
        key_name=key,
        identity_token=token,
        formats=formats,
        annotations=annotations,
        recursive=recursive,
        force=force,
    )
    print_json(result.model_dump(mode="json"))


sign_command = cli_errors(sign)
