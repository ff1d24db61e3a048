"""Sign + publish (bundle format) throughput at concurrency 8, next to an unsigned baseline.

Against a loopback ``docker-registry`` this benchmark starts (the tests' ``start_registry``)
and a fresh SQLite database, it pushes ``--images`` test images per round and per subject
(untimed), then times, with at most ``--concurrency`` operations in flight:

- **signed**: ``app.enforce.sign.sign_image`` with a stored ECDSA P-256 key: scope check,
  tag -> digest, key load and decrypt, DSSE signature, bundle referrer push (with the
  referrers fallback index update this registry needs), and the ``SignatureRecord`` insert;
- **baseline**: the same registry work without signing: tag -> digest and the push of a
  referrer manifest of the same shape whose layer is an unsigned bundle of the same size.

The two take turns over ``--rounds`` rounds; the median round of each is reported as
images/s, with the overhead of signing over the baseline in percent. Prints one JSON line.

    .venv/bin/python benchmarks/sign_publish.py [--images 200] [--rounds 3] [--concurrency 8]
        [--fallback-settle SECONDS]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.auth.scopes import Scope  # noqa: E402
from app.auth.tokens import Principal  # noqa: E402
from app.config import load_settings  # noqa: E402
from app.db.migrate import upgrade  # noqa: E402
from app.db.session import session_scope  # noqa: E402
from app.enforce.sign import sign_image  # noqa: E402
from app.oci.refs import ImageRef  # noqa: E402
from app.services import Services  # noqa: E402
from app.signing.keys import generate_key  # noqa: E402
from app.signing.payloads import cosign_statement  # noqa: E402
from app.signing.publish import publish_bundle  # noqa: E402
from app.signing.signers import Algorithm  # noqa: E402
from tests.fixtures.images import push_random_image  # noqa: E402
from tests.fixtures.registry import start_registry, stop_registry  # noqa: E402

KEK = base64.b64encode(b"sealgate-benchmark-kek-32-bytes!").decode()
PRINCIPAL = Principal(name="bench", scopes=(Scope.parse("admin"),))


async def push_images(services: Services, repository: str, count: int) -> list[str]:
    """Push ``count`` distinct images tagged ``v<i>``; return their tag references."""
    semaphore = asyncio.Semaphore(8)

    async def _one(i: int) -> str:
        async with semaphore:
            ref, _ = await push_random_image(services.registry, repository, tag=f"v{i}")
            return f"{ref.name}:v{i}"

    return list(await asyncio.gather(*(_one(i) for i in range(count))))


async def timed(
    images: list[str], operation: Callable[[str], Awaitable[object]], concurrency: int
) -> tuple[float, float]:
    """Wall and CPU seconds (this process) to run ``operation`` on every image, ``concurrency``
    in flight. CPU time shows Sealgate's own cost even when the machine is busy."""
    semaphore = asyncio.Semaphore(concurrency)

    async def _one(image: str) -> None:
        async with semaphore:
            await operation(image)

    started, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(_one(image) for image in images))
    return time.perf_counter() - started, time.process_time() - cpu


def unsigned_bundle(statement: bytes) -> bytes:
    """A bundle of the signed one's shape and size, with a zero signature (never verifies)."""
    bundle = {
        "mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
        "verificationMaterial": {"publicKey": {"hint": base64.b64encode(bytes(32)).decode()}},
        "dsseEnvelope": {
            "payload": base64.b64encode(statement).decode(),
            "payloadType": "application/vnd.in-toto+json",
            "signatures": [{"sig": base64.b64encode(bytes(71)).decode()}],
        },
    }
    return json.dumps(bundle, separators=(",", ":")).encode()


async def run(args: argparse.Namespace, workdir: Path) -> dict[str, object]:
    registry = start_registry(workdir / "registry")
    database_url = f"sqlite:///{workdir / 'sealgate.db'}"
    upgrade(database_url)
    settings = load_settings(
        database_url=database_url,
        insecure_registries=[registry.host],
        key_encryption_key=KEK,
        log_level="WARNING",
    )
    services = Services.from_settings(settings)
    if args.fallback_settle is not None:
        # The client re-reads the referrers fallback index this long after each write (a
        # registry without the referrers API); both subjects pay it alike.
        services.registry.fallback_settle_seconds = args.fallback_settle
    try:
        with session_scope(services.sessions) as session:
            generate_key(session, settings=settings, name="bench", algorithm=Algorithm.ecdsa_p256)

        async def signed(image: str) -> object:
            return await sign_image(services, image=image, principal=PRINCIPAL, key_name="bench")

        async def baseline(image: str) -> object:
            ref = ImageRef.parse(image)
            pinned = ref.with_digest(await services.registry.resolve_digest(ref))
            assert pinned.digest is not None
            statement = cosign_statement(digest=pinned.digest, repository=ref.name)
            return await publish_bundle(
                services.registry, image=pinned, bundle=unsigned_bundle(statement)
            )

        subjects = {"baseline": baseline, "signed": signed}
        warm = await push_images(services, f"{registry.host}/bench/warm", 8)
        for operation in subjects.values():
            await timed(warm[:4] if operation is baseline else warm[4:], operation, 4)
        seconds: dict[str, list[float]] = {name: [] for name in subjects}
        cpu: dict[str, list[float]] = {name: [] for name in subjects}
        for round_ in range(args.rounds):
            for name, operation in subjects.items():
                images = await push_images(
                    services, f"{registry.host}/bench/{name}-{round_}", args.images
                )
                wall, used = await timed(images, operation, args.concurrency)
                seconds[name].append(wall)
                cpu[name].append(used)
    finally:
        await services.aclose()
        stop_registry(registry)
    rates = {name: args.images / statistics.median(s) for name, s in seconds.items()}
    return {
        "benchmark": "sign_publish",
        "images": args.images,
        "rounds": args.rounds,
        "concurrency": args.concurrency,
        "signed_images_per_s": round(rates["signed"], 1),
        "baseline_images_per_s": round(rates["baseline"], 1),
        "overhead_percent": round((rates["baseline"] / rates["signed"] - 1) * 100, 1),
        "signed_cpu_ms_per_image": round(statistics.median(cpu["signed"]) / args.images * 1e3, 2),
        "baseline_cpu_ms_per_image": round(
            statistics.median(cpu["baseline"]) / args.images * 1e3, 2
        ),
        "fallback_settle_seconds": services.registry.fallback_settle_seconds,
        "target": ">= 50 images/s signed, overhead <= 30%",
        "python": platform.python_version(),
        "machine": platform.machine(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument(
        "--fallback-settle",
        type=float,
        default=None,
        help="override the registry client's fallback-index settle time (seconds)",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sealgate-bench-") as tmp:
        result = asyncio.run(run(args, Path(tmp)))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
