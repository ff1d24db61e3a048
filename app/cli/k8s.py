"""``sealgate k8s``: what a cluster needs to run Sealgate as its admission webhook.

``manifests`` prints every object as multi-document YAML for ``kubectl apply -f -``;
``cert`` makes a private CA and the serving certificate for the webhook's Service. Neither
talks to a cluster. The modules behind them (YAML, cryptography) load only when used.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from app.cli.output import cli_errors
from app.errors import InputError
from app.failure_mode import FailureMode
from app.limits import MAX_CLI_FILE_BYTES

k8s_cli = typer.Typer(
    help="Kubernetes: manifests and the webhook's serving certificate.", no_args_is_help=True
)

_DEFAULT_NAMESPACE = "sealgate-system"


def _read(path: Path, what: str, *, limit: int = MAX_CLI_FILE_BYTES) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as e:
        raise InputError(f"{what} {path}: {e.strerror}") from e
    if len(data) > limit:
        raise InputError(f"{what} {path} is over {limit} bytes")
    return data


@k8s_cli.command("manifests")
@cli_errors
def manifests(
    namespace: Annotated[
        str, typer.Option(help="Namespace for Sealgate (excluded from admission).")
    ] = _DEFAULT_NAMESPACE,
    image: Annotated[str | None, typer.Option(help="Sealgate's container image.")] = None,
    replicas: Annotated[int, typer.Option(help="Replicas of the webhook.")] = 2,
    budget: Annotated[
        float | None,
        typer.Option(help="Seconds per review [SEALGATE_ADMISSION_BUDGET]; timeout is one more."),
    ] = None,
    failure_mode: Annotated[
        FailureMode | None,
        typer.Option(help="closed denies, open allows, when the budget runs out."),
    ] = None,
    ca_bundle: Annotated[
        Path | None, typer.Option("--ca-bundle", help="PEM of the CA that signed tls.crt.")
    ] = None,
    kek_file: Annotated[
        Path | None,
        typer.Option("--kek-file", help="Base64 key-encryption key: adds the sealgate-kek Secret."),
    ] = None,
    database_url: Annotated[
        str | None,
        typer.Option(help="PostgreSQL URL: adds the sealgate-settings Secret."),
    ] = None,
) -> None:
    """Print the Namespace, Secrets, ConfigMap, migration Job, Deployment, budget, Service
    and webhook configurations as YAML."""
    from app.config import decode_kek, get_settings
    from app.k8s.manifests import (
        DEFAULT_IMAGE,
        KEK_SECRET,
        SETTINGS_NAME,
        TLS_SECRET,
        ManifestOptions,
        cluster_manifests,
        manifests_yaml,
    )

    settings = get_settings()
    kek = None
    if kek_file is not None:
        kek = _read(kek_file, "--kek-file").decode("ascii", "replace").strip()
        try:
            decode_kek(kek)
        except ValueError as e:
            raise InputError(f"--kek-file {kek_file}: {e}") from e
    options = ManifestOptions(
        namespace=namespace,
        image=image or DEFAULT_IMAGE,
        replicas=replicas,
        budget=settings.admission_budget if budget is None else budget,
        failure_mode=failure_mode or settings.failure_mode,
        ca_bundle=_read(ca_bundle, "--ca-bundle") if ca_bundle is not None else None,
        kek=kek,
        database_url=database_url,
    )
    objects = cluster_manifests(options)
    needed = [
        "Sealgate as the cluster's admission webhook: kubectl apply -f this file.",
        f"The Pods start once these exist in namespace {namespace}:",
        f"- Secret {TLS_SECRET} (type kubernetes.io/tls): sealgate k8s cert, then",
        f"  kubectl -n {namespace} create secret tls {TLS_SECRET} --cert tls.crt --key tls.key",
    ]
    if kek is None:
        needed.append(
            f"- Secret {KEK_SECRET} with key 'kek' (base64 of 32 random bytes; keep a copy):"
        )
        needed.append(
            f"  kubectl -n {namespace} create secret generic {KEK_SECRET} --from-file=kek=kek.b64"
        )
    if database_url is None:
        needed.append(f"- Secret {SETTINGS_NAME} with SEALGATE_DATABASE_URL (PostgreSQL):")
        needed.append(
            f"  kubectl -n {namespace} create secret generic {SETTINGS_NAME} "
            "--from-literal=SEALGATE_DATABASE_URL=postgresql+psycopg://..."
        )
    if ca_bundle is None:
        needed.append("- caBundle is not set: pass --ca-bundle ca.crt, or let cert-manager's")
        needed.append("  CA injector fill it (annotation cert-manager.io/inject-ca-from).")
    typer.echo(manifests_yaml(objects, header="\n".join(needed)), nl=False)


@k8s_cli.command("cert")
@cli_errors
def cert(
    service: Annotated[str, typer.Option(help="The webhook's Service name.")] = "sealgate",
    namespace: Annotated[str, typer.Option(help="The Service's namespace.")] = _DEFAULT_NAMESPACE,
    out: Annotated[Path, typer.Option(help="Directory for ca.crt, tls.crt, tls.key.")] = Path(),
    days: Annotated[int, typer.Option(help="Validity of the CA and the certificate.")] = 365,
    force: Annotated[bool, typer.Option(help="Replace files that exist.")] = False,
) -> None:
    """Make a CA and a serving certificate for the Service's DNS names."""
    from app.k8s.certificate import (
        make_serving_certificate,
        service_dns_names,
        write_serving_certificate,
    )
    from app.k8s.manifests import TLS_SECRET

    certificate = make_serving_certificate(service=service, namespace=namespace, days=days)
    paths = write_serving_certificate(certificate, directory=out, overwrite=force)
    names = ", ".join(service_dns_names(service=service, namespace=namespace))
    typer.echo(f"wrote {', '.join(str(p) for p in paths)} for {names}", err=True)
    ca, crt, key = paths
    typer.echo(
        f"next: kubectl -n {namespace} create secret tls {TLS_SECRET} --cert {crt} --key {key}\n"
        f"      sealgate k8s manifests --namespace {namespace} --ca-bundle {ca} "
        "| kubectl apply -f -",
        err=True,
    )
