"""``sealgate copy``, ``export`` and ``import`` from the command line: JSON report on stdout,
progress lines and the identity remap on stderr, clear errors."""

from __future__ import annotations

import json
import tarfile
from collections.abc import Callable
from pathlib import Path

from app.oci.refs import ImageRef
from app.transfer.layout import blob_path
from tests.conftest import Cli
from tests.fixtures.registry import RegistryProcess
from tests.fixtures.transfer import on_registry, push_attached_image


class TestCopyCommand:
    def test_copy_prints_the_report_progress_lines_and_the_remap(
        self,
        sealgate: Cli,
        registry: RegistryProcess,
        site_registry: RegistryProcess,
        unique_repo: Callable[[str], str],
    ) -> None:
        attached = on_registry(registry, lambda c: push_attached_image(c, unique_repo("app")))
        destination = f"{site_registry.host}/cli/{attached.index.repository}"

        result = sealgate("copy", f"{attached.index.name}:multi", destination, "--no-progress")

        assert result.exit_code == 0, result.output
        report = json.loads(result.stdout)
        assert report["digest"] == attached.index.digest and report["tag"] == "multi"
        assert report["referrers"] == 2 and report["legacy_tags"] == 1
        assert "copied" in result.stderr and "blobs" in result.stderr.splitlines()[0]
        assert (
            f"--remap-identity {site_registry.host}/cli={attached.index.registry}" in result.stderr
        )
        copied = ImageRef.parse(f"{destination}:multi")
        assert on_registry(registry, lambda c: c.resolve_digest(copied)) == attached.index.digest

    def test_a_bad_platform_is_one_clear_line(self, sealgate: Cli) -> None:
        result = sealgate("copy", "127.0.0.1:1/a:v1", "127.0.0.1:2/b", "--platform", "linux")

        assert result.exit_code == 1
        assert result.stderr.startswith("error: platform 'linux'")
        assert "[input.platform]" in result.stderr
        assert "Traceback" not in result.output


class TestExportImportCommands:
    def test_export_then_import_to_a_prefix(
        self,
        sealgate: Cli,
        registry: RegistryProcess,
        site_registry: RegistryProcess,
        unique_repo: Callable[[str], str],
        tmp_path: Path,
    ) -> None:
        attached = on_registry(registry, lambda c: push_attached_image(c, unique_repo("app")))
        archive = tmp_path / "site.tar"

        exported = sealgate("export", f"{attached.index.name}:multi", "-o", str(archive))
        imported = sealgate("import", str(archive), "--to", f"{site_registry.host}/plant")

        assert exported.exit_code == 0, exported.output
        assert json.loads(exported.stdout)["images"][0]["referrers"] == 2
        assert imported.exit_code == 0, imported.output
        (image,) = json.loads(imported.stdout)["images"]
        assert image["destination"] == (
            f"{site_registry.host}/plant/{attached.index.repository}:multi"
        )
        assert f"--remap-identity {site_registry.host}/plant=" in imported.stderr

    def test_a_tampered_archive_is_refused_naming_the_blob(
        self,
        sealgate: Cli,
        registry: RegistryProcess,
        site_registry: RegistryProcess,
        unique_repo: Callable[[str], str],
        tmp_path: Path,
    ) -> None:
        attached = on_registry(registry, lambda c: push_attached_image(c, unique_repo("app")))
        archive = tmp_path / "site.tar"
        assert sealgate("export", str(attached.index), "-o", str(archive)).exit_code == 0
        layer = on_registry(
            registry, lambda c: c.get_manifest(attached.index.with_digest(attached.children[0]))
        ).layers[0]
        with tarfile.open(archive) as tar:
            offset = tar.getmember(blob_path(layer.digest)).offset_data
        with archive.open("r+b") as raw:
            raw.seek(offset)
            first = raw.read(1)
            raw.seek(offset)
            raw.write(bytes([first[0] ^ 0xFF]))

        result = sealgate("import", str(archive), "--to", site_registry.host)

        assert result.exit_code == 1
        assert f"blob {layer.digest}" in result.stderr
        assert "[input.layout_tampered]" in result.stderr
