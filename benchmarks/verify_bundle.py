"""Verification time of one Sigstore bundle from warm caches: a key bundle and a keyless one.

Key bundle: a cosign v3 image signature (DSSE in-toto statement, ECDSA P-256) made by
Sealgate's own signer, verified by ``app.verify.bundle.verify_bundle`` against a key
authority (parse, signature over the PAE, statement, digest binding). Baseline in the same
run: the bare ECDSA verification of the same PAE with ``cryptography`` (the floor no
verifier can go under). Target: at most 2 ms.

Keyless bundle: cosign's real ``oci-attestation.sigstore.json`` (public-good, Rekor v1),
verified offline by ``verify_bundle`` with a keyless authority (identity, production
trusted root, digest binding) next to sigstore-python's own ``Verifier.verify_dsse`` on the
same bundle (``Bundle.from_json`` + ``verify_dsse`` with a ``Verifier`` built once).

Each subject is timed over ``--rounds`` rounds of ``--iterations`` calls, the subjects
taking turns within a round; the median round is reported. Prints one JSON line each.

    .venv/bin/python -m benchmarks.verify_bundle [--iterations 200] [--rounds 7]
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cryptography.hazmat.primitives import hashes  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from sigstore.models import Bundle, TrustedRoot  # noqa: E402
from sigstore.verify import Verifier  # noqa: E402
from sigstore.verify.policy import Identity  # noqa: E402

from app.signing.bundles import key_dsse_bundle  # noqa: E402
from app.signing.payloads import IN_TOTO_PAYLOAD_TYPE, cosign_statement, dsse_pae  # noqa: E402
from app.signing.signers import (  # noqa: E402
    Algorithm,
    KeySigner,
    generate_private_key,
    public_key_pem,
)
from app.verify.bundle import verify_bundle  # noqa: E402
from app.verify.keyless_identity import parse_identity  # noqa: E402
from app.verify.trust import key_authority, keyless_authority  # noqa: E402
from app.verify.trusted_root import TrustedRootRef  # noqa: E402

ASSETS = ROOT / "tests" / "assets" / "sigstore"
COSIGN_BUNDLE = ASSETS / "cosign" / "oci-attestation.sigstore.json"
PRODUCTION_ROOT = ASSETS / "trusted-roots" / "production.trusted_root.json"
COSIGN_DIGEST = "sha256:732112270d7e59418a8c080b134b24cabd67d250d0d0147a97ed95ba5c280aa4"
COSIGN_SUBJECT, COSIGN_ISSUER = "cody@soyland.com", "https://github.com/login/oauth"


def median_seconds(
    subjects: dict[str, Callable[[], object]], *, iterations: int, rounds: int
) -> dict[str, float]:
    """Per subject, the median over ``rounds`` of one call's time (averaged over a round)."""
    for func in subjects.values():
        func()  # warm caches (parsed keys, trusted roots, pydantic validators)
    per_call: dict[str, list[float]] = {name: [] for name in subjects}
    for _ in range(rounds):
        for name, func in subjects.items():
            started = time.perf_counter()
            for _ in range(iterations):
                func()
            per_call[name].append((time.perf_counter() - started) / iterations)
    return {name: statistics.median(times) for name, times in per_call.items()}


def key_bundle(*, iterations: int, rounds: int) -> dict[str, object]:
    signer = KeySigner(
        name="bench",
        algorithm=Algorithm.ecdsa_p256,
        private_key=generate_private_key(Algorithm.ecdsa_p256),
    )
    digest = "sha256:" + hashlib.sha256(b"bench image").hexdigest()
    statement = cosign_statement(digest=digest, repository="registry.example/team/app")
    bundle = key_dsse_bundle(statement=statement, signer=signer)
    authority = key_authority(name="bench", keys=[public_key_pem(signer.public_key)])
    public = signer.public_key
    assert isinstance(public, ec.EllipticCurvePublicKey)
    signature = json.loads(bundle)["dsseEnvelope"]["signatures"][0]["sig"]
    raw_signature = base64.b64decode(signature)
    pae = dsse_pae(IN_TOTO_PAYLOAD_TYPE, statement)
    timings = median_seconds(
        {
            "ecdsa_verify": lambda: public.verify(raw_signature, pae, ec.ECDSA(hashes.SHA256())),
            "verify_bundle": lambda: verify_bundle(
                bundle, authority=authority, expected_digest=digest
            ),
        },
        iterations=iterations,
        rounds=rounds,
    )
    return {
        "benchmark": "verify_bundle",
        "bundle": "key (ECDSA P-256, DSSE cosign v3 signature)",
        "bytes": len(bundle),
        "verify_bundle_ms": round(timings["verify_bundle"] * 1000, 4),
        "baseline_ecdsa_verify_ms": round(timings["ecdsa_verify"] * 1000, 4),
        "overhead_ms": round((timings["verify_bundle"] - timings["ecdsa_verify"]) * 1000, 4),
        "target_ms": 2.0,
        "met": timings["verify_bundle"] * 1000 <= 2.0,
        "iterations": iterations,
        "rounds": rounds,
        "python": platform.python_version(),
    }


def keyless_bundle(*, iterations: int, rounds: int) -> dict[str, object]:
    data = COSIGN_BUNDLE.read_bytes()
    authority = keyless_authority(
        name="bench",
        identity=parse_identity(subject=COSIGN_SUBJECT, issuer=COSIGN_ISSUER),
        trusted_root=TrustedRootRef.resolve(str(PRODUCTION_ROOT)),
    )
    verifier = Verifier(trusted_root=TrustedRoot.from_file(str(PRODUCTION_ROOT)))
    policy = Identity(identity=COSIGN_SUBJECT, issuer=COSIGN_ISSUER)

    def sigstore_python() -> object:
        return verifier.verify_dsse(Bundle.from_json(data), policy)

    timings = median_seconds(
        {
            "sigstore_python": sigstore_python,
            "verify_bundle": lambda: verify_bundle(
                data, authority=authority, expected_digest=COSIGN_DIGEST
            ),
        },
        iterations=iterations,
        rounds=rounds,
    )
    return {
        "benchmark": "verify_bundle",
        "bundle": "keyless (cosign oci-attestation.sigstore.json, public-good, offline)",
        "bytes": len(data),
        "verify_bundle_ms": round(timings["verify_bundle"] * 1000, 4),
        "baseline_sigstore_python_verify_dsse_ms": round(timings["sigstore_python"] * 1000, 4),
        "ratio": round(timings["verify_bundle"] / timings["sigstore_python"], 3),
        "iterations": iterations,
        "rounds": rounds,
        "python": platform.python_version(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    print(json.dumps(key_bundle(iterations=args.iterations, rounds=args.rounds)))
    print(json.dumps(keyless_bundle(iterations=max(1, args.iterations // 10), rounds=args.rounds)))


if __name__ == "__main__":
    main()
