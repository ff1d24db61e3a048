"""``sealgate scan``: ingest a vulnerability report for an image, list scans, parse offline."""

from __future__ import annotations

import getpass
from pathlib import Path
from typing import Annotated, TypeVar

import typer

from app.cli.context import run_with_services
from app.cli.groups import command_group
from app.cli.output import cli_errors, print_json
from app.errors import InputError, ScanError

T = TypeVar("T")

scan_cli = command_group(help="Vulnerability reports (Trivy, Grype, SARIF, CycloneDX).")

# ``app.scans.detect.AUTO`` and the values of ``ReportFormat``, written out so that
# ``--help`` does not load the parsers (tests/cli/test_help.py checks they agree).
AUTO = "auto"
FORMATS = ("trivy", "grype", "sarif", "cyclonedx", "harbor")
FormatOption = Annotated[
    str, typer.Option("--format", help=f"{AUTO} (detected) or one of: {', '.join(FORMATS)}.")
]
ReportArgument = Annotated[Path, typer.Argument(help="The report file as the scanner wrote it.")]


def read_report(path: Path) -> bytes:
    """The report's bytes; refuses files over the size limit before reading them."""
    from app.limits import MAX_REPORT_BYTES

    try:
        size = path.stat().st_size
        if size > MAX_REPORT_BYTES:
            raise ScanError(
                f"{path} is {size} bytes, larger than the limit of {MAX_REPORT_BYTES} bytes",
                code="scan.too_large",
            )
        return path.read_bytes()
    except OSError as e:
        raise InputError(f"cannot read {path}: {e.strerror}") from e


@scan_cli.command("ingest")
@cli_errors
def ingest(
    image: Annotated[str, typer.Argument(help="The scanned image (a tag is resolved).")],
    report: ReportArgument,
    format: FormatOption = AUTO,
    attest_key: Annotated[
        str | None,
        typer.Option(
            "--attest-key",
            help="Also sign the scan as an in-toto vulnerability attestation "
            "(cosign's vuln predicate) with this stored signing key "
            "[SEALGATE_SCAN_ATTESTATION_KEY].",
        ),
    ] = None,
) -> None:
    """Check a report against IMAGE, attach it as a referrer and store it."""
    from app.enforce.scans import upload_scan

    data = read_report(report)
    stored = run_with_services(
        lambda services: upload_scan(
            services,
            image=image,
            report=data,
            format=format,
            uploaded_by=f"cli:{getpass.getuser()}",
            attest_key=attest_key,
        )
    )
    print_json(stored.model_dump(mode="json"))


@scan_cli.command("list")
@cli_errors
def list_(image: Annotated[str, typer.Argument(help="The image (a tag is resolved).")]) -> None:
    """List IMAGE's scans: uploads and unsigned scan referrers, newest first."""
    from app.enforce.scans import image_scans

    scans = run_with_services(lambda services: image_scans(services, image))
    print_json(
        [
            {
                "source": s.source.value,
                "scanner": s.report.scanner,
                "format": s.report.format.value,
                "scanned_at": s.scanned_at,
                "counts": s.report.counts,
                "suppressed": s.report.suppressed,
                "referrer_digest": s.referrer_digest,
                "uploaded_by": s.uploaded_by,
            }
            for s in scans
        ]
    )


@scan_cli.command("parse")
@cli_errors
def parse(report: ReportArgument, format: FormatOption = AUTO) -> None:
    """Parse a report offline and print the normalised result (nothing is stored)."""
    from app.scans.detect import parse_report

    print_json(parse_report(read_report(report), format).model_dump(mode="json"))
