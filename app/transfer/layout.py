"""OCI image layouts (image-spec ``image-layout.md``) as a directory or a tar: write and read.

A layout is ``oci-layout`` (``{"imageLayoutVersion": "1.0.0"}``), ``index.json`` (an OCI image
index) and ``blobs/<alg>/<hex>``, manifests included. ``skopeo``, ``oras``, ``crane`` and
containerd read it; a tar of it is what ``oci-archive:`` means to skopeo.

Sealgate writes one ``index.json`` entry per carried manifest that nothing else in the layout
lists (images, referrers, legacy signature tags), with these annotations:

- ``org.opencontainers.image.ref.name``: the image's tag (``v1``), as skopeo and containerd
  look images up by it (``skopeo inspect oci-archive:site.tar:v1``);
- ``io.containerd.image.name``: the full source name with the tag
  (``registry.corp/team/app:v1``), as ``ctr images export`` writes it;
- ``dev.sealgate.transfer.repository``: the source repository (``registry.corp/team/app``)
  of every entry, so import knows where each manifest goes;
- ``dev.sealgate.transfer.referrer-of``: on a referrer, the digest of its subject;
- ``dev.sealgate.transfer.tag``: on a legacy cosign manifest, its tag
  (``sha256-<hex>.sig``).

``LayoutReader`` checks every blob it hands out against its descriptor: a size or digest
that does not match is ``input.layout_tampered`` naming the blob; a layout that is not one
(no ``oci-layout``, a bad ``index.json``, a listed manifest missing) is ``input.layout``.
The tar is read in place, member by member, never extracted, so its paths cannot escape.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tarfile
import tempfile
from collections.abc import AsyncIterable, AsyncIterator, Iterator
from pathlib import Path
from typing import IO, Any

from app.errors import InputError
from app.limits import MAX_INDEX_BYTES
from app.oci import media
from app.oci.descriptor import Descriptor
from app.oci.digests import parse_digest

LAYOUT_FILE = "oci-layout"
INDEX_FILE = "index.json"
LAYOUT_VERSION = "1.0.0"
REF_NAME = "org.opencontainers.image.ref.name"
IMAGE_NAME = "io.containerd.image.name"
REPOSITORY = "dev.sealgate.transfer.repository"
REFERRER_OF = "dev.sealgate.transfer.referrer-of"
LEGACY_TAG = "dev.sealgate.transfer.tag"
# index.json and manifests are read whole; blobs piece by piece.
READ_CHUNK = 1024 * 1024


def blob_path(digest: str) -> str:
    """``blobs/<alg>/<hex>`` for ``digest``."""
    algorithm, _, encoded = parse_digest(digest).partition(":")
    return f"blobs/{algorithm}/{encoded}"


def _layout_error(where: Path, problem: str) -> InputError:
    return InputError(f"{where} is not a usable OCI layout: {problem}", code="input.layout")


def _tampered(where: Path, descriptor: Descriptor, problem: str) -> InputError:
    return InputError(
        f"{where}: blob {descriptor.digest} {problem}; the layout was changed after it was "
        "written, nothing is imported",
        code="input.layout_tampered",
        details={"blob": descriptor.digest},
    )


class LayoutWriter:
    """Writes a layout directory; reopening one keeps its entries and blobs (resumable)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        layout = root / LAYOUT_FILE
        self._entries: list[dict[str, Any]] = []
        if root.exists() and any(root.iterdir()):
            if not layout.is_file():
                raise InputError(
                    f"{root} exists and is not an OCI layout; give an empty or new directory",
                    code="input.layout",
                )
            self._entries = list(LayoutReader.open(root).index().get("manifests") or [])
        (root / "blobs").mkdir(parents=True, exist_ok=True)
        layout.write_text(json.dumps({"imageLayoutVersion": LAYOUT_VERSION}))

    def has_blob(self, descriptor: Descriptor) -> bool:
        """Whether the blob is there with its size (its digest was checked when written)."""
        path = self.root / blob_path(descriptor.digest)
        return path.is_file() and path.stat().st_size == descriptor.size

    async def write_blob(self, descriptor: Descriptor, chunks: AsyncIterable[bytes]) -> None:
        """Write the blob from ``chunks`` through a temporary file, renamed into place only
        when size and digest match (``input.layout_tampered`` otherwise)."""
        path = self.root / blob_path(descriptor.digest)
        path.parent.mkdir(parents=True, exist_ok=True)
        hasher = hashlib.new(descriptor.digest.partition(":")[0])
        size = 0
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".partial-")
        try:
            with os.fdopen(handle, "wb") as out:
                async for chunk in chunks:
                    hasher.update(chunk)
                    size += len(chunk)
                    out.write(chunk)
            actual = f"{descriptor.digest.partition(':')[0]}:{hasher.hexdigest()}"
            if actual != descriptor.digest or size != descriptor.size:
                raise _tampered(
                    self.root, descriptor, f"arrived as {size} bytes hashing to {actual}"
                )
            os.replace(temporary, path)
        finally:
            if os.path.exists(temporary):
                os.unlink(temporary)

    async def write_bytes(self, descriptor: Descriptor, data: bytes) -> None:
        """Write a small blob (a manifest) held in memory."""
        if not self.has_blob(descriptor):
            await self.write_blob(descriptor, _once(data))

    def add(self, descriptor: Descriptor) -> None:
        """List ``descriptor`` in ``index.json`` (an equal entry is listed once)."""
        entry = descriptor.to_json()
        if entry not in self._entries:
            self._entries.append(entry)

    def finish(self) -> None:
        """Write ``index.json`` (atomically)."""
        index = {"schemaVersion": 2, "mediaType": media.OCI_INDEX, "manifests": self._entries}
        temporary = self.root / f".{INDEX_FILE}.partial"
        temporary.write_text(json.dumps(index, indent=2))
        os.replace(temporary, self.root / INDEX_FILE)


def write_tar(root: Path, target: Path) -> None:
    """Write the layout directory ``root`` as the tar ``target`` (``oci-layout`` and
    ``index.json`` first, then the blobs; owners and times zeroed), atomically."""
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    os.close(handle)

    def plain(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        info.mtime = 0
        return info

    try:
        with tarfile.open(temporary, "w", format=tarfile.PAX_FORMAT) as tar:
            for name in (LAYOUT_FILE, INDEX_FILE):
                tar.add(root / name, arcname=name, filter=plain)
            for path in sorted((root / "blobs").rglob("*")):
                if path.name.startswith("."):
                    continue
                tar.add(
                    path, arcname=path.relative_to(root).as_posix(), recursive=False, filter=plain
                )
        os.replace(temporary, target)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


class LayoutReader:
    """Reads a layout directory or tar, checking every blob against its descriptor."""

    def __init__(self, where: Path, *, tar: tarfile.TarFile | None) -> None:
        self.where = where
        self._tar = tar
        self._members: dict[str, tarfile.TarInfo] = {}
        if tar is not None:
            for member in tar.getmembers():
                if member.isfile():
                    self._members[member.name.removeprefix("./")] = member

    @classmethod
    def open(cls, where: Path) -> LayoutReader:
        """The layout at ``where`` (a directory, or a tar, possibly compressed)."""
        if where.is_dir():
            reader = cls(where, tar=None)
        elif where.is_file():
            try:
                # The reader owns the open tar and closes it (``close`` or ``with``).
                reader = cls(where, tar=tarfile.open(where, "r:*"))  # noqa: SIM115
            except (tarfile.TarError, OSError) as e:
                raise _layout_error(where, f"it is neither a directory nor a tar ({e})") from e
        else:
            raise InputError(f"{where} does not exist", code="input.layout")
        try:
            version = json.loads(reader._read_small(LAYOUT_FILE)).get("imageLayoutVersion")
        except (ValueError, AttributeError) as e:
            raise _layout_error(where, f"{LAYOUT_FILE} is not a JSON object") from e
        if not isinstance(version, str) or not version.startswith("1."):
            reader.close()
            raise _layout_error(where, f"{LAYOUT_FILE} has imageLayoutVersion {version!r}")
        return reader

    def close(self) -> None:
        if self._tar is not None:
            self._tar.close()

    def __enter__(self) -> LayoutReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _open(self, name: str) -> IO[bytes] | None:
        if self._tar is None:
            path = self.where / name
            return path.open("rb") if path.is_file() else None
        member = self._members.get(name)
        return self._tar.extractfile(member) if member is not None else None

    def _read_small(self, name: str) -> bytes:
        handle = self._open(name)
        if handle is None:
            raise _layout_error(self.where, f"it has no {name}")
        with handle:
            data = handle.read(MAX_INDEX_BYTES + 1)
        if len(data) > MAX_INDEX_BYTES:
            raise _layout_error(self.where, f"{name} is larger than {MAX_INDEX_BYTES} bytes")
        return data

    def index(self) -> dict[str, Any]:
        """``index.json``, parsed (an object with a ``manifests`` list)."""
        try:
            document = json.loads(self._read_small(INDEX_FILE))
        except ValueError as e:
            raise _layout_error(self.where, f"{INDEX_FILE} is not JSON: {e}") from e
        if not isinstance(document, dict) or not isinstance(document.get("manifests"), list):
            raise _layout_error(self.where, f"{INDEX_FILE} is not an image index")
        return document

    def entries(self) -> list[Descriptor]:
        """The descriptors ``index.json`` lists."""
        try:
            return [Descriptor.from_json(d) for d in self.index()["manifests"]]
        except InputError as e:
            raise _layout_error(self.where, f"{INDEX_FILE}: {e.message}") from e

    def read(self, descriptor: Descriptor, *, max_bytes: int) -> bytes:
        """A small blob (a manifest), checked against ``descriptor``."""
        if descriptor.size > max_bytes:
            raise _layout_error(
                self.where, f"manifest {descriptor.digest} is larger than {max_bytes} bytes"
            )
        return b"".join(self._chunks(descriptor))

    def verify(self, descriptor: Descriptor) -> None:
        """Return when the blob is there with its size and digest; else raise
        ``input.layout_tampered`` (wrong bytes) or ``input.layout`` (missing)."""
        for _ in self._chunks(descriptor):
            pass

    async def chunks(self, descriptor: Descriptor) -> AsyncIterator[bytes]:
        """The blob piece by piece, checked at the end (``input.layout_tampered``)."""
        for chunk in self._chunks(descriptor):
            yield chunk

    def _chunks(self, descriptor: Descriptor) -> Iterator[bytes]:
        name = blob_path(descriptor.digest)
        handle = self._open(name)
        if handle is None:
            raise _layout_error(self.where, f"blob {descriptor.digest} is listed but missing")
        hasher = hashlib.new(descriptor.digest.partition(":")[0])
        size = 0
        with handle:
            while chunk := handle.read(READ_CHUNK):
                size += len(chunk)
                if size > descriptor.size:
                    raise _tampered(
                        self.where, descriptor, f"is larger than its {descriptor.size} bytes"
                    )
                hasher.update(chunk)
                if size == descriptor.size:
                    if handle.read(1):
                        raise _tampered(
                            self.where, descriptor, f"is larger than its {descriptor.size} bytes"
                        )
                    break
                yield chunk
        actual = f"{descriptor.digest.partition(':')[0]}:{hasher.hexdigest()}"
        if size != descriptor.size:
            raise _tampered(self.where, descriptor, f"has {size} bytes, not {descriptor.size}")
        if actual != descriptor.digest:
            raise _tampered(self.where, descriptor, f"hashes to {actual}")
        if size:
            yield chunk


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


def remove_tree(path: Path) -> None:
    """Remove a temporary layout directory."""
    shutil.rmtree(path, ignore_errors=True)
