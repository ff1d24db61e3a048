"""The image names a report gives, read by every parser and checked against the image."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from app.errors import ScanError
from app.oci.refs import ImageRef
from app.scans.detect import parse_report
from app.scans.model import ReportFormat, ScanReport
from app.scans.subject import check_names, names_registry

Asset = Callable[[str], Path]
IMAGE = ImageRef.parse("registry.lan/team/app:v1").with_digest("sha256:" + "1" * 64)


def report_naming(*names: str) -> ScanReport:
    return ScanReport(scanner="trivy", format=ReportFormat.trivy, image_names=names)


class TestParsersReadNames:
    @pytest.mark.parametrize(
        ("sample", "names"),
        [
            ("trivy/dd_trivy_schema2_image_no_vuln.json", ("trivy-unittest:latest",)),
            (
                "trivy/trivy_alpine-310_image_schema2_current.json",
                (
                    "testdata/fixtures/images/alpine-310.tar.gz",
                    "ghcr.io/aquasecurity/trivy-test-images:alpine-310",
                ),
            ),
            ("trivy/dd_trivy_0.69_fs_jar_cvssv4.json", ()),  # a filesystem scan: a path
            (
                "grype/dd_grype_0.94_busybox_epss_risk.json",
                (
                    "busybox:1.32.1",
                    "busybox@sha256:ae39a6f5c07297d7ab64dbd4f82c77c874cc6a94cea29fdec309d0992574b4f7",
                ),
            ),
            (
                "sarif/trivy_alpine-310_sarif_current.json",
                (
                    "testdata/fixtures/images/alpine-310.tar.gz",
                    "ghcr.io/aquasecurity/trivy-test-images:alpine-310",
                ),
            ),
            ("cyclonedx/trivy_npm_cdx1.7_with_vulnerabilities.json", ()),  # an application
        ],
    )
    def test_names_as_written(self, asset: Asset, sample: str, names: tuple[str, ...]) -> None:
        assert parse_report(asset(sample).read_bytes()).image_names == names


class TestCheckNames:
    def test_the_images_repository_confirms_it(self) -> None:
        report = report_naming("registry.lan/team/app:v0", "elsewhere.io/x/y:v1")
        assert check_names(report, image=IMAGE, digest_confirmed=False) == ()

    def test_another_repository_is_refused(self) -> None:
        report = report_naming("trivy-unittest:latest", "ghcr.io/acme/other:v1")
        with pytest.raises(ScanError) as raised:
            check_names(report, image=IMAGE, digest_confirmed=False)
        assert raised.value.code == "scan.wrong_image"
        assert raised.value.http_status == 422
        assert "'ghcr.io/acme/other:v1'" in raised.value.message
        assert f"not for registry.lan/team/app@{IMAGE.digest}" in raised.value.message

    def test_another_repository_with_the_images_digest_is_a_mirror(self) -> None:
        report = report_naming("ghcr.io/acme/app@" + "sha256:" + "1" * 64)
        (warning,) = check_names(report, image=IMAGE, digest_confirmed=True)
        assert "another repository" in warning and "same digest" in warning

    @pytest.mark.parametrize(
        "names", [("trivy-unittest:latest",), ("team/app:v1", "teamdojo:latest"), ("./x.tar",)]
    )
    def test_a_tag_or_local_name_only_is_accepted_with_a_warning(
        self, names: tuple[str, ...]
    ) -> None:
        (warning,) = check_names(report_naming(*names), image=IMAGE, digest_confirmed=False)
        assert f"names only {names[0]!r}" in warning
        assert "a tag or a local name" in warning

    def test_a_local_name_with_the_images_digest_needs_no_warning(self) -> None:
        report = report_naming("trivy-unittest:latest")
        assert check_names(report, image=IMAGE, digest_confirmed=True) == ()

    def test_no_name_needs_no_warning(self) -> None:
        assert check_names(report_naming(), image=IMAGE, digest_confirmed=False) == ()

    def test_a_docker_hub_short_name_is_its_repository(self) -> None:
        hub = ImageRef.parse("docker.io/library/busybox").with_digest("sha256:" + "2" * 64)
        assert check_names(report_naming("busybox:1.32"), image=hub, digest_confirmed=False) == ()

    @pytest.mark.parametrize(
        ("name", "qualified"),
        [
            ("ghcr.io/a/b", True),
            ("127.0.0.1:5000/a", True),
            ("localhost/a", True),
            ("team/app", False),
            ("app:v1", False),
            ("app@sha256:" + "a" * 64, False),
        ],
    )
    def test_names_registry(self, name: str, qualified: bool) -> None:
        assert names_registry(name) is qualified
