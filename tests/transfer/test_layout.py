"""``export`` to an OCI layout and ``import`` into a site registry, with skopeo as an
independent reader of the layout, and tampering refused on import naming the blob."""

from __future__ import annotations

import json
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from app.errors import InputError, RegistryError
from app.oci.client import RegistryClient
from app.oci.refs import ImageRef
from app.transfer.export import export_images
from app.transfer.layout import LEGACY_TAG, REF_NAME, REFERRER_OF, REPOSITORY, blob_path
from app.transfer.naming import SiteTarget
from app.transfer.site_import import import_layout
from tests.fixtures.registry import RegistryProcess
from tests.fixtures.transfer import AttachedImage, push_attached_image
from tests.transfer.test_copy import skopeo

MAX_MANIFEST = 4 * 1024 * 1024


async def exported(client: RegistryClient, repo: str, output: Path) -> tuple[AttachedImage, Path]:
    attached = await push_attached_image(client, repo)
    await export_images(client, images=[attached.index.with_tag("multi")], output=output)
    return attached, output


def placed(site: RegistryProcess, prefix: str, source: ImageRef) -> ImageRef:
    return ImageRef.parse(f"{site.host}/{prefix}/{source.repository}:multi")


class TestExport:
    async def test_index_json_names_the_image_its_referrers_and_legacy_tags(
        self, transfer_client: RegistryClient, unique_repo: Callable[[str], str], tmp_path: Path
    ) -> None:
        attached, root = await exported(transfer_client, unique_repo("app"), tmp_path / "dir")

        index = json.loads((root / "index.json").read_text())
        layout = json.loads((root / "oci-layout").read_text())

        assert layout == {"imageLayoutVersion": "1.0.0"}
        by_digest = {e["digest"]: e["annotations"] for e in index["manifests"]}
        assert by_digest[attached.index.digest][REF_NAME] == "multi"
        assert by_digest[attached.index.digest][REPOSITORY] == attached.index.name
        assert by_digest[attached.bundle.digest][REFERRER_OF] == attached.index.digest
        assert by_digest[attached.scan.digest][REFERRER_OF] == attached.children[0]
        (legacy,) = [a for a in by_digest.values() if LEGACY_TAG in a]
        assert legacy[LEGACY_TAG] == attached.signature_tag
        for child in attached.children:  # listed by the index, so not in index.json
            assert child not in by_digest
            assert (root / blob_path(child)).is_file()

    async def test_exporting_again_into_the_directory_fetches_nothing(
        self, transfer_client: RegistryClient, unique_repo: Callable[[str], str], tmp_path: Path
    ) -> None:
        attached, root = await exported(transfer_client, unique_repo("app"), tmp_path / "dir")

        again = await export_images(
            transfer_client, images=[attached.index.with_tag("multi")], output=root
        )

        assert again.blobs_written == 0 and again.blobs_present > 0
        entries = json.loads((root / "index.json").read_text())["manifests"]
        assert len(entries) == 4  # index, bundle, scan, .sig: each once

    async def test_skopeo_inspects_and_copies_out_of_the_archive(
        self,
        transfer_client: RegistryClient,
        site_registry: RegistryProcess,
        unique_repo: Callable[[str], str],
        tmp_path: Path,
    ) -> None:
        attached, archive = await exported(
            transfer_client, unique_repo("app"), tmp_path / "site.tar"
        )
        destination = placed(site_registry, "skopeo", attached.index)

        inspected = skopeo("inspect", "--raw", f"oci-archive:{archive}:multi")
        copied = skopeo(
            "copy",
            "--all",
            "--preserve-digests",
            "--dest-tls-verify=false",
            f"oci-archive:{archive}:multi",
            f"docker://{destination}",
        )

        assert inspected.returncode == 0, inspected.stderr
        assert json.loads(inspected.stdout)["manifests"][1]["digest"] == attached.children[1]
        assert copied.returncode == 0, copied.stderr
        assert await transfer_client.resolve_digest(destination) == attached.index.digest


class TestImport:
    async def test_the_archive_arrives_with_everything_attached(
        self,
        transfer_client: RegistryClient,
        site_registry: RegistryProcess,
        unique_repo: Callable[[str], str],
        tmp_path: Path,
    ) -> None:
        attached, archive = await exported(
            transfer_client, unique_repo("app"), tmp_path / "site.tar"
        )
        target = SiteTarget.parse(f"{site_registry.host}/plant7")
        destination = placed(site_registry, "plant7", attached.index)
        assert attached.index.digest is not None

        report = await import_layout(
            transfer_client, layout=archive, target=target, max_manifest_bytes=MAX_MANIFEST
        )
        again = await import_layout(
            transfer_client, layout=archive, target=target, max_manifest_bytes=MAX_MANIFEST
        )

        client = transfer_client
        assert await client.resolve_digest(destination) == attached.index.digest
        listed = await client.list_referrers(destination.with_digest(attached.index.digest))
        assert [d.digest for d in listed] == [attached.bundle.digest]
        scans = await client.list_referrers(destination.with_digest(attached.children[0]))
        assert [d.digest for d in scans] == [attached.scan.digest]
        assert await client.get_manifest(destination.with_tag(attached.signature_tag))
        assert report.images == [
            {
                "source": f"{attached.index.name}:multi",
                "destination": f"{destination.name}:multi",
                "digest": attached.index.digest,
            }
        ]
        assert report.remap_identity == [f"{site_registry.host}/plant7={attached.index.registry}"]
        assert again.transfer is not None and again.transfer.bytes_sent == 0

    async def test_one_byte_changed_in_a_layer_is_refused_naming_the_blob(
        self,
        transfer_client: RegistryClient,
        site_registry: RegistryProcess,
        unique_repo: Callable[[str], str],
        tmp_path: Path,
    ) -> None:
        attached, archive = await exported(
            transfer_client, unique_repo("app"), tmp_path / "site.tar"
        )
        arm = await transfer_client.get_manifest(attached.index.with_digest(attached.children[1]))
        layer = arm.layers[0]
        with tarfile.open(archive) as tar:
            offset = tar.getmember(blob_path(layer.digest)).offset_data
        with archive.open("r+b") as raw:
            raw.seek(offset + layer.size // 2)
            byte = raw.read(1)
            raw.seek(offset + layer.size // 2)
            raw.write(bytes([byte[0] ^ 0x01]))

        with pytest.raises(InputError) as caught:
            await import_layout(
                transfer_client,
                layout=archive,
                target=SiteTarget.parse(f"{site_registry.host}/tampered"),
                max_manifest_bytes=MAX_MANIFEST,
            )

        assert caught.value.code == "input.layout_tampered"
        assert layer.digest in caught.value.message
        assert caught.value.details == {"blob": layer.digest}
        # Nothing was pushed: not even the untouched amd64 blobs.
        destination = placed(site_registry, "tampered", attached.index)
        amd = await transfer_client.get_manifest(attached.index.with_digest(attached.children[0]))
        assert not await transfer_client.has_blob(destination, amd.layers[0])
        with pytest.raises(RegistryError):
            await transfer_client.resolve_digest(destination)

    async def test_a_changed_manifest_is_refused_too(
        self,
        transfer_client: RegistryClient,
        site_registry: RegistryProcess,
        unique_repo: Callable[[str], str],
        tmp_path: Path,
    ) -> None:
        attached, root = await exported(transfer_client, unique_repo("app"), tmp_path / "dir")
        path = root / blob_path(attached.children[0])
        path.write_bytes(path.read_bytes().replace(b'"schemaVersion":2', b'"schemaVersion": 2'))

        with pytest.raises(InputError) as caught:
            await import_layout(
                transfer_client,
                layout=root,
                target=SiteTarget.parse(site_registry.host),
                max_manifest_bytes=MAX_MANIFEST,
            )

        assert caught.value.code == "input.layout_tampered"
        assert attached.children[0] in caught.value.message

    @pytest.mark.parametrize(
        ("files", "problem"),
        [
            ({}, "does not exist"),
            ({"oci-layout": "[]"}, "not a JSON object"),
            ({"oci-layout": '{"imageLayoutVersion": "1.0.0"}'}, "no index.json"),
            (
                {
                    "oci-layout": '{"imageLayoutVersion": "1.0.0"}',
                    "index.json": json.dumps(
                        {
                            "schemaVersion": 2,
                            "manifests": [
                                {
                                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                                    "digest": "sha256:" + "a" * 64,
                                    "size": 10,
                                }
                            ],
                        }
                    ),
                },
                "names no source repository",
            ),
        ],
        ids=["missing", "bad-oci-layout", "no-index", "unnamed-entry"],
    )
    async def test_what_is_not_a_usable_layout_is_refused(
        self,
        transfer_client: RegistryClient,
        site_registry: RegistryProcess,
        tmp_path: Path,
        files: dict[str, str],
        problem: str,
    ) -> None:
        root = tmp_path / "layout"
        if files:
            root.mkdir()
            for name, text in files.items():
                (root / name).write_text(text)

        with pytest.raises(InputError) as caught:
            await import_layout(
                transfer_client,
                layout=root,
                target=SiteTarget.parse(site_registry.host),
                max_manifest_bytes=MAX_MANIFEST,
            )

        assert caught.value.code == "input.layout"
        assert problem in caught.value.message


class TestSiteTarget:
    def test_images_land_under_the_prefix_with_their_repository_path(self) -> None:
        target = SiteTarget.parse("site.local:5000/plant7/")
        placed_ref = target.place(ImageRef.parse("registry.corp/team/app:v1"))
        assert str(placed_ref) == "site.local:5000/plant7/team/app:v1"
        assert str(SiteTarget.parse("site.local").place(ImageRef.parse("nginx"))) == (
            "site.local/library/nginx:latest"
        )

    @pytest.mark.parametrize("text", ["", "team/app", "site.local/a@sha256:x", "site.local/A"])
    def test_a_target_that_is_not_registry_prefix_is_refused(self, text: str) -> None:
        with pytest.raises(InputError):
            SiteTarget.parse(text)
