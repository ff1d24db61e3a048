"""An admission decision through a mirror, next to the same decision through the upstream.

Two loopback ``docker-registry`` processes this benchmark starts (the tests'
``start_registry``): the upstream and a mirror. ``--images`` images are pushed to the
upstream, signed by ``app.enforce.sign.sign_image`` (bundle format, stored ECDSA P-256 key,
an authority scoped to the upstream) and copied with their evidence (referrer manifests,
the ``sha256-<hex>`` fallback index) to the mirror under a Harbor-style prefix, as a
pull-through cache holds them. Then, untimed setup done, each round times one decision per
image with ``app.enforce.pipeline.decide`` at the admission entry point, naming the image by
its upstream tag, one decision at a time:

- **mirrored**: ``registry_mirrors = {UPSTREAM: [MIRROR/cache]}`` (upstream still tried
  last): tag resolution, the referrer listing, the bundle manifest and blob are all read
  through the mirror;
- **baseline**: the same decisions with no mirror map, reading the upstream directly.

Every cache of the pipeline is off (TTL 0: tag, evidence, failure and decision caches), so
each decision does all its registry reads. The two take turns over ``--rounds`` rounds,
alternating which goes first; per-decision latencies of all rounds are pooled and the p50,
p95 and mean reported, with the mirrored/baseline ratio, and the CPU time of this process
per decision (Sealgate's own cost, which a busy machine does not inflate the way it does
wall time). The load average is read before and after. Prints one JSON line.

It runs twice. With ``--formats bundle`` (images signed as cosign v3 bundles only) the
mirror, like the upstream, has no legacy ``.sig`` tag: its 404 sends that one read on to
the upstream, one request more than the baseline makes. With ``both`` every read the
decision makes is answered by the mirror, so the difference is the routing alone.

    .venv/bin/python -m benchmarks.mirror_decision [--images 50] [--rounds 6]
        [--formats bundle both]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.auth.scopes import Scope  # noqa: E402
from app.auth.tokens import Principal  # noqa: E402
from app.config import load_settings  # noqa: E402
from app.db.migrate import upgrade  # noqa: E402
from app.db.session import session_scope  # noqa: E402
from app.enforce.deadline import Deadline  # noqa: E402
from app.enforce.outcome import DecisionRequest  # noqa: E402
from app.enforce.pipeline import decide  # noqa: E402
from app.enforce.sign import SignFormat, parse_formats, sign_image  # noqa: E402
from app.policy.input import Entrypoint, assumed_kubernetes  # noqa: E402
from app.services import Services  # noqa: E402
from app.signing.keys import generate_key, get_key  # noqa: E402
from app.signing.signers import Algorithm  # noqa: E402
from app.verify.trust import key_authority, save_authority  # noqa: E402
from tests.fixtures.images import push_random_image  # noqa: E402
from tests.fixtures.mirrors import mirror_image  # noqa: E402
from tests.fixtures.registry import start_registry, stop_registry  # noqa: E402

KEK = base64.b64encode(b"sealgate-benchmark-kek-32-bytes!").decode()
PRINCIPAL = Principal(name="bench", scopes=(Scope.parse("admin"),))
NO_CACHES = {
    "cache_tag_ttl": 0,
    "cache_evidence_ttl": 0,
    "cache_failure_ttl": 0,
    "cache_decision_ttl": 0,
}


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def decide_all(services: Services, images: list[str]) -> list[float]:
    """Seconds per decision, one at a time; every decision must allow."""
    latencies = []
    for image in images:
        request = DecisionRequest(
            image=image,
            entrypoint=Entrypoint.admission,
            deadline=Deadline(10.0),
            kubernetes=assumed_kubernetes(Entrypoint.admission, "default"),
        )
        started = time.perf_counter()
        outcome = await decide(request, services.decisions)
        latencies.append(time.perf_counter() - started)
        if not outcome.allowed:
            raise AssertionError(f"{image} was not admitted: {outcome.decision}")
    return latencies


async def prepare(
    services: Services, upstream: str, mirror: str, count: int, formats: tuple[SignFormat, ...]
) -> list[str]:
    """Signed images in the upstream, copied with their evidence to the mirror."""
    with session_scope(services.sessions) as session:
        generate_key(
            session,
            settings=services.settings,
            name="bench",
            algorithm=Algorithm.ecdsa_p256,
            scopes=["**"],
        )
        public = get_key(session, name="bench").public_key_pem
        save_authority(
            session, key_authority(name="bench", keys=[public], scopes=[f"{upstream}/**"])
        )
    images = []
    for i in range(count):
        image, _ = await push_random_image(services.registry, f"{upstream}/bench/app{i}")
        await sign_image(
            services, image=str(image), principal=PRINCIPAL, key_name="bench", formats=formats
        )
        await mirror_image(services.registry, image, f"{mirror}/cache/bench/app{i}")
        images.append(f"{image.name}:v1")
    return images


async def run(args: argparse.Namespace, workdir: Path, formats: str) -> dict[str, Any]:
    load_before = os.getloadavg()
    upstream = start_registry(workdir / "upstream")
    mirror = start_registry(workdir / "mirror")
    database_url = f"sqlite:///{workdir / 'sealgate.db'}"
    upgrade(database_url)
    common: dict[str, Any] = {
        "database_url": database_url,
        "key_encryption_key": KEK,
        "log_level": "WARNING",
        "docker_config": None,
        **NO_CACHES,
    }
    baseline = Services.from_settings(load_settings(**common))
    mirrored = Services.from_settings(
        load_settings(
            **common,
            registry_mirrors={upstream.host: {"mirror": [{"location": f"{mirror.host}/cache"}]}},
        )
    )
    subjects = {"baseline": baseline, "mirrored": mirrored}
    latencies: dict[str, list[float]] = {name: [] for name in subjects}
    cpu: dict[str, float] = dict.fromkeys(subjects, 0.0)
    try:
        images = await prepare(
            baseline, upstream.host, mirror.host, args.images, parse_formats(formats)
        )
        for services in subjects.values():  # warm connections, OPA and the store context
            await decide_all(services, images[:5])
        for round_ in range(args.rounds):
            order = list(subjects) if round_ % 2 == 0 else list(reversed(subjects))
            for name in order:
                used = time.process_time()
                latencies[name] += await decide_all(subjects[name], images)
                cpu[name] += time.process_time() - used
    finally:
        for services in subjects.values():
            await services.aclose()
        stop_registry(upstream)
        stop_registry(mirror)
    load_after = os.getloadavg()
    summary = {
        name: {
            "p50_ms": round(statistics.median(values) * 1e3, 2),
            "p95_ms": round(percentile(values, 0.95) * 1e3, 2),
            "mean_ms": round(statistics.fmean(values) * 1e3, 2),
            "cpu_ms": round(cpu[name] / len(values) * 1e3, 2),
        }
        for name, values in latencies.items()
    }
    return {
        "benchmark": "mirror_decision",
        "signature_formats": formats,
        "images": args.images,
        "rounds": args.rounds,
        "decisions_per_subject": len(latencies["baseline"]),
        **{f"{name}_{k}": v for name, stats in summary.items() for k, v in stats.items()},
        "ratio_p50": round(summary["mirrored"]["p50_ms"] / summary["baseline"]["p50_ms"], 3),
        "ratio_mean": round(summary["mirrored"]["mean_ms"] / summary["baseline"]["mean_ms"], 3),
        "ratio_cpu": round(summary["mirrored"]["cpu_ms"] / summary["baseline"]["cpu_ms"], 3),
        "target": "mirrored within 10% of baseline",
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in load_after],
        "python": platform.python_version(),
        "machine": platform.machine(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--images", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument(
        "--formats", nargs="+", default=["bundle", "both"], choices=["bundle", "legacy", "both"]
    )
    args = parser.parse_args()
    for formats in args.formats:
        with tempfile.TemporaryDirectory(prefix="sealgate-bench-") as tmp:
            result = asyncio.run(run(args, Path(tmp), formats))
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
