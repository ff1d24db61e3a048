"""Copy of 20 images between two loopback registries: Sealgate next to ``skopeo copy --all``.

The benchmark starts two ``docker-registry`` processes (the tests' ``start_registry``), pushes
``--images`` images to the source (untimed), each an OCI index over linux/amd64 and
linux/arm64 whose image manifests have ``--layers`` layers of random (incompressible) bytes,
about 20 MB in all by default, with what a signed and scanned image carries: a Sigstore
bundle referrer on the index and on each platform manifest (as ``sealgate sign
--recursive`` writes them), a scan referrer on the index and a legacy ``.sig`` tag. Each
round then copies every image, one image after the other, to fresh repositories of the
destination with:

- **skopeo**: ``skopeo copy --all`` per image (Debian's skopeo; it copies no referrers),
  each process with an empty blob-info cache of its own, so that it copies every blob as
  the other contenders do;
- **skopeo_shared_cache**: the same with skopeo's default, machine-wide blob-info cache
  (``/var/lib/containers/cache`` as root): from the second round on it knows that the
  destination registry holds these blobs in the previous round's repositories and mounts
  them from there instead of copying them (6 of the 8 blobs of an image), which no other
  contender does; reported for comparison with earlier figures;
- **images alone**: ``app.transfer.copy.copy_image(referrers=False)`` in one process;
- **with referrers**: ``copy_image`` with everything attached (referrers listed through
  the fallback index, pushed with the fallback index rebuilt, legacy tags);
- **CLI, images alone** (with ``--cli``): ``sealgate copy --no-referrers`` per image, a
  process each like skopeo (so process start-up is counted on both sides).

Contenders take turns in a rotating order over ``--rounds`` rounds; the median round of
each is reported, with the CPU time per image of the client (this process, or the
processes a contender starts) and of the two registries (``/proc``), which a busy machine
moves much less than wall time. The registries run pinned to CPU 0 and every client (this
process and the skopeo and sealgate processes it starts) to CPU 1, so the two sides share
the machine the same way; the load average before and after is part of the result. After
the rounds, one image is copied once more by each contender through counting proxies
(``benchmarks/support/counting_proxy.py``) in front of both registries: the registry
requests of one copy (``/v2/`` pings not counted). Prints one JSON line.

    .venv/bin/python benchmarks/copy_images.py [--images 20] [--layers 3] [--rounds 5] [--cli]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.config import load_settings  # noqa: E402
from app.oci import media  # noqa: E402
from app.oci.client import RegistryClient  # noqa: E402
from app.oci.refs import ImageRef  # noqa: E402
from app.scans.ingest import SCAN_ARTIFACT_TYPE  # noqa: E402
from app.transfer.copy import copy_image  # noqa: E402
from benchmarks.support.counting_proxy import CountingProxy  # noqa: E402
from tests.fixtures.images import image_config  # noqa: E402
from tests.fixtures.registry import RegistryProcess, start_registry, stop_registry  # noqa: E402
from tests.verify.cosign_wire import push_legacy  # noqa: E402

PLATFORMS = (("linux", "amd64", None), ("linux", "arm64", "v8"))
REGISTRY_CPUS = {0}
CLIENT_CPUS = {1}


async def push_image(
    client: RegistryClient, repository: str, *, layers: int, layer_bytes: int
) -> None:
    """One index over two platforms with ``layers`` random layers each, tagged ``v1``, with a
    bundle on the index and on each platform, a scan on the index and a ``.sig`` tag."""
    base = ImageRef.parse(repository)
    entries = []
    children = []
    for os_name, architecture, variant in PLATFORMS:
        blobs = [secrets.token_bytes(layer_bytes) for _ in range(layers)]
        descriptors = [
            await client.push_blob(base, blob, media_type=media.OCI_LAYER_GZIP) for blob in blobs
        ]
        config = image_config(
            diff_ids=[d.digest for d in descriptors],
            os=os_name,
            architecture=architecture,
            variant=variant,
        )
        config_descriptor = await client.push_blob(base, config, media_type=media.OCI_IMAGE_CONFIG)
        manifest = {
            "schemaVersion": 2,
            "mediaType": media.OCI_MANIFEST,
            "config": config_descriptor.to_json(),
            "layers": [d.to_json() for d in descriptors],
        }
        pushed = await client.push_manifest(base, manifest, media_type=media.OCI_MANIFEST)
        children.append(pushed.digest)
        platform_json = {"os": os_name, "architecture": architecture}
        if variant:
            platform_json["variant"] = variant
        entries.append({**pushed.to_json(), "platform": platform_json})
    index = {"schemaVersion": 2, "mediaType": media.OCI_INDEX, "manifests": entries}
    top = await client.push_manifest(base, index, media_type=media.OCI_INDEX, tag="v1")
    pinned = base.with_tag("v1").with_digest(top.digest)
    for digest in [top.digest, *children]:
        bundle = json.dumps({"mediaType": media.SIGSTORE_BUNDLE_V03, "pad": "x" * 3000}).encode()
        await client.push_referrer(
            pinned.with_digest(digest),
            artifact_type=media.SIGSTORE_BUNDLE_V03,
            layers=[(bundle + secrets.token_hex(8).encode(), media.SIGSTORE_BUNDLE_V03, {})],
            annotations={"dev.sigstore.bundle.content": "dsse-envelope"},
        )
    await client.push_referrer(
        pinned,
        artifact_type=SCAN_ARTIFACT_TYPE,
        layers=[(json.dumps({"Results": [], "pad": "y" * 20000}).encode(), "application/json", {})],
        annotations={"dev.sealgate.scan.format": "trivy"},
    )
    await push_legacy(client, pinned, [(b'{"critical": {}}', {"x": secrets.token_hex(8)})])


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def process_cpu(process: subprocess.Popen[bytes]) -> float:
    """CPU seconds (user + system) ``process`` has used so far, from ``/proc``."""
    fields = Path(f"/proc/{process.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_cpu() -> float:
    """CPU seconds used by the processes this one started and waited for."""
    times = os.times()
    return times.children_user + times.children_system


def skopeo_copy(source: str, destination: str, *, caches: Path | None) -> None:
    """``skopeo copy --all`` of ``source`` to ``destination`` (``host/repo:tag``).

    With ``caches``, the process keeps its blob-info cache in a new, empty directory there
    (removed afterwards) instead of the machine-wide one: containers/image puts it under
    ``$XDG_DATA_HOME`` for a rootless user, which ``_CONTAINERS_ROOTLESS_UID`` tells it it is.
    """
    binary = shutil.which("skopeo")
    if binary is None:
        raise SystemExit("skopeo is not installed (sudo apt-get install skopeo)")
    env = dict(os.environ)
    cache = Path(tempfile.mkdtemp(dir=caches)) if caches is not None else None
    if cache is not None:
        env.update(_CONTAINERS_ROOTLESS_UID=str(os.getuid() or 65534), XDG_DATA_HOME=str(cache))
    try:
        _skopeo(binary, source, destination, env)
    finally:
        if cache is not None:
            shutil.rmtree(cache, ignore_errors=True)


def _skopeo(binary: str, source: str, destination: str, env: dict[str, str]) -> None:
    subprocess.run(
        [
            binary,
            "copy",
            "--all",
            "--quiet",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
            f"docker://{source}",
            f"docker://{destination}",
        ],
        check=True,
        capture_output=True,
        timeout=300,
        env=env,
    )


def skopeo_round(
    source: str, destination: str, images: int, tag: str, *, caches: Path | None
) -> None:
    for i in range(images):
        skopeo_copy(f"{source}/bench/img{i}:v1", f"{destination}/{tag}/img{i}:v1", caches=caches)


def cli_copy(source: str, destination: str) -> None:
    env = {**os.environ, "SEALGATE_REGISTRY_TOTAL_TIMEOUT": "120"}
    subprocess.run(
        [
            str(ROOT / ".venv" / "bin" / "sealgate"),
            "copy",
            "--no-referrers",
            "--no-progress",
            source,
            destination,
        ],
        check=True,
        capture_output=True,
        timeout=300,
        env=env,
    )


def cli_round(source: str, destination: str, images: int, tag: str) -> None:
    for i in range(images):
        cli_copy(f"{source}/bench/img{i}:v1", f"{destination}/{tag}/img{i}:v1")


async def sealgate_round(
    client: RegistryClient,
    source: str,
    destination: str,
    images: int,
    tag: str,
    *,
    referrers: bool,
) -> None:
    for i in range(images):
        await copy_image(
            client,
            source=ImageRef.parse(f"{source}/bench/img{i}:v1"),
            destination=ImageRef.parse(f"{destination}/{tag}/img{i}:v1"),
            referrers=referrers,
        )


async def count_requests(
    client: RegistryClient,
    source: RegistryProcess,
    destination: RegistryProcess,
    *,
    cli: bool,
    caches: Path,
) -> dict[str, dict[str, int]]:
    """The registry requests one copy of ``img0`` makes, per contender, counted by proxies
    in front of both registries. Sealgate's client copies through them twice first (it
    learns each new host's scheme and referrers API once), then once more, counted."""
    source_proxy, destination_proxy = CountingProxy(source.host), CountingProxy(destination.host)
    counted: dict[str, dict[str, int]] = {}
    copies: dict[str, Callable[[str], Awaitable[None]]] = {
        "skopeo": lambda tag: asyncio.to_thread(
            skopeo_copy,
            f"{source_proxy.host}/bench/img0:v1",
            f"{destination_proxy.host}/{tag}/img0:v1",
            caches=caches,
        ),
    }
    for name, referrers in (("images_alone", False), ("with_referrers", True)):

        async def copy(tag: str, referrers: bool = referrers) -> None:
            await copy_image(
                client,
                source=ImageRef.parse(f"{source_proxy.host}/bench/img0:v1"),
                destination=ImageRef.parse(f"{destination_proxy.host}/{tag}/img0:v1"),
                referrers=referrers,
            )

        copies[name] = copy
    if cli:
        copies["cli_images_alone"] = lambda tag: asyncio.to_thread(
            cli_copy,
            f"{source_proxy.host}/bench/img0:v1",
            f"{destination_proxy.host}/{tag}/img0:v1",
        )
    try:
        await copies["images_alone"]("count-warm-a")
        await copies["with_referrers"]("count-warm-r")
        for name, copy in copies.items():
            source_proxy.reset()
            destination_proxy.reset()
            await copy(f"count-{name.replace('_', '-')}")
            _, read = source_proxy.counts()
            _, written = destination_proxy.counts()
            counted[name] = {
                "source": len(read),
                "destination": len(written),
                "total": len(read) + len(written),
            }
    finally:
        source_proxy.close()
        destination_proxy.close()
    return counted


async def run(args: argparse.Namespace, workdir: Path) -> dict[str, object]:
    pinning = hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) >= 2
    if pinning:
        os.sched_setaffinity(0, REGISTRY_CPUS)
    source = start_registry(workdir / "source")
    destination = start_registry(workdir / "destination")
    if pinning:
        os.sched_setaffinity(0, CLIENT_CPUS)
    caches = workdir / "skopeo-caches"
    caches.mkdir()
    settings = load_settings(
        insecure_registries=[source.host, destination.host],
        registry_total_timeout=120.0,
        docker_config=None,
    )
    client = RegistryClient.from_settings(settings)
    load_before = load_average()
    try:
        semaphore = asyncio.Semaphore(4)

        async def _push(i: int) -> None:
            async with semaphore:
                await push_image(
                    client,
                    f"{source.host}/bench/img{i}",
                    layers=args.layers,
                    layer_bytes=args.layer_bytes,
                )

        await asyncio.gather(*(_push(i) for i in range(args.images)))
        total_bytes = args.images * len(PLATFORMS) * args.layers * args.layer_bytes
        src, dst = source.host, destination.host

        contenders: dict[str, Callable[[str], Awaitable[None]]] = {
            "skopeo": lambda tag: asyncio.to_thread(
                skopeo_round, src, dst, args.images, tag, caches=caches
            ),
            "skopeo_shared_cache": lambda tag: asyncio.to_thread(
                skopeo_round, src, dst, args.images, tag, caches=None
            ),
            "images_alone": lambda tag: sealgate_round(
                client, src, dst, args.images, tag, referrers=False
            ),
            "with_referrers": lambda tag: sealgate_round(
                client, src, dst, args.images, tag, referrers=True
            ),
        }
        if args.cli:
            contenders["cli_images_alone"] = lambda tag: asyncio.to_thread(
                cli_round, src, dst, args.images, tag
            )
        names = list(contenders)
        seconds: dict[str, list[float]] = {name: [] for name in names}
        client_cpu: dict[str, list[float]] = {name: [] for name in names}
        registry_cpu: dict[str, list[float]] = {name: [] for name in names}
        for round_number in range(args.rounds):
            order = names[round_number % len(names) :] + names[: round_number % len(names)]
            for name in order:
                tag = f"r{round_number}-{name.replace('_', '-')}"
                registries = process_cpu(source.process) + process_cpu(destination.process)
                cpu = time.process_time() + children_cpu()
                started = time.perf_counter()
                await contenders[name](tag)
                seconds[name].append(time.perf_counter() - started)
                client_cpu[name].append(time.process_time() + children_cpu() - cpu)
                registry_cpu[name].append(
                    process_cpu(source.process) + process_cpu(destination.process) - registries
                )
        # What the copies carried, checked once on the last round's destinations.
        last = f"r{args.rounds - 1}-with-referrers"
        check = ImageRef.parse(f"{destination.host}/{last}/img0:v1")
        digest = await client.resolve_digest(check)
        carried = await client.list_referrers(check.with_digest(digest))
        requests = await count_requests(client, source, destination, cli=args.cli, caches=caches)
    finally:
        await client.aclose()
        stop_registry(source)
        stop_registry(destination)
    medians = {name: statistics.median(values) for name, values in seconds.items()}

    def per_image_ms(values: list[float]) -> float:
        return round(1000 * statistics.median(values) / args.images, 1)

    return {
        "benchmark": "copy_images",
        "images": args.images,
        "platforms": len(PLATFORMS),
        "layers_per_platform": args.layers,
        "layer_bytes": args.layer_bytes,
        "total_megabytes": round(total_bytes / 1e6, 1),
        "rounds": args.rounds,
        "median_seconds": {k: round(v, 3) for k, v in medians.items()},
        "all_seconds": {k: [round(x, 3) for x in v] for k, v in seconds.items()},
        "cpu_ms_per_image": {
            name: {
                "client": per_image_ms(client_cpu[name]),
                "registries": per_image_ms(registry_cpu[name]),
            }
            for name in names
        },
        "requests_per_copy": requests,
        "images_alone_vs_skopeo": round(medians["skopeo"] / medians["images_alone"], 2),
        "images_alone_vs_skopeo_shared_cache": round(
            medians["skopeo_shared_cache"] / medians["images_alone"], 2
        ),
        "cli_images_alone_vs_skopeo": round(medians["skopeo"] / medians["cli_images_alone"], 2)
        if "cli_images_alone" in medians
        else None,
        "referrers_overhead_percent": round(
            100 * (medians["with_referrers"] / medians["images_alone"] - 1), 1
        ),
        "index_referrers_at_destination": len(carried),
        "pinned_cpus": {"registries": sorted(REGISTRY_CPUS), "clients": sorted(CLIENT_CPUS)}
        if pinning
        else None,
        "load_average_before": load_before,
        "load_average_after": load_average(),
        "python": platform.python_version(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20)
    parser.add_argument("--layers", type=int, default=3)
    parser.add_argument("--layer-bytes", type=int, default=170 * 1024)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--cli", action="store_true", help="also time `sealgate copy` as one process per image"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sealgate-bench-") as tmp:
        result = asyncio.run(run(args, Path(tmp)))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
