"""Whether the image names a report gives fit the image it is uploaded for.

Digests prove what was scanned; names only say what the scanner was told. So, after the
digest check in ``app.scans.ingest`` (config digest, manifest digests):

- a name that gives a registry (``ghcr.io/acme/app:v1``, ``127.0.0.1:5000/team/app@sha256:...``)
  names a repository. When the report names repositories and none is the image's, it is
  refused (``scan.wrong_image``) unless one of its digests is the image's: a copy of the
  same image scanned in another repository (a mirror) is accepted, with a warning;
- a name without a registry (``trivy-unittest:latest``, ``team/app``, a tarball path) is a
  tag or a local name: it cannot contradict the image and cannot confirm it either. A
  report that names nothing better is accepted with a warning saying so;
- a report that names no image at all is bound to the image by the upload alone.
"""

from __future__ import annotations

from app.errors import InputError, ScanError
from app.oci.refs import ImageRef
from app.scans.model import ScanReport

MAX_NAMES_SHOWN = 3


def names_registry(name: str) -> bool:
    """Whether ``name`` starts with a registry host, by Docker's rule: a first path
    component with a ``.`` or a ``:``, or ``localhost``."""
    first, slash, _ = name.partition("/")
    return bool(slash) and ("." in first or ":" in first or first == "localhost")


def repository_of(name: str) -> str | None:
    """``registry/repository`` of an image reference; None when ``name`` is not one."""
    try:
        return ImageRef.parse(name).name
    except InputError:
        return None


def check_names(report: ScanReport, *, image: ImageRef, digest_confirmed: bool) -> tuple[str, ...]:
    """Warnings about the report's image names for ``image`` (pinned); raise ScanError
    (``scan.wrong_image``) when they name other repositories only and no digest of the
    report is the image's (``digest_confirmed``)."""
    qualified = [n for n in report.image_names if names_registry(n) and repository_of(n)]
    local = [n for n in report.image_names if n not in qualified]
    if any(repository_of(n) == image.name for n in report.image_names):
        return ()
    subject = f"{image.name}@{image.digest}"
    if qualified:
        others = _shown(qualified)
        if not digest_confirmed:
            raise ScanError(
                f"the report is for {others}, not for {subject}",
                code="scan.wrong_image",
                details={"report_names": list(qualified), "image": subject},
            )
        return (
            f"the report names {others}, another repository: accepted for {subject} "
            "because it names the same digest",
        )
    if local and not digest_confirmed:
        return (
            f"the report names only {_shown(local)} (a tag or a local name, no registry): "
            f"nothing in it shows it is {subject}; accepted on the uploader's word",
        )
    return ()


def _shown(names: list[str]) -> str:
    shown = ", ".join(repr(n[:200]) for n in names[:MAX_NAMES_SHOWN])
    more = len(names) - MAX_NAMES_SHOWN
    return shown + (f" (and {more} more)" if more > 0 else "")
