"""The rewritten vulnerability rules and outcome decide exactly as the library before them.

``policies/rules/vulnerabilities.rego`` and ``policies/lib/outcome.rego`` were rewritten
for speed (one walk over the findings, lookups instead of tests, fewer calls per denial).
The files as they were before are kept in ``tests/policy/assets/library_before/``; this
test builds both libraries and compares their whole decisions (allow, deny / warn / audit
with codes, messages and fixes, mode, exemptions, notes, ``valid_until_ns``) on every
entry point over a seeded, varied set of inputs and parameters: severities, fixes, VEX
states, allowlist entries active, expired, without reason or with a bad expiry,
exemptions by namespace, image and rule glob, modes per namespace, no scan, stale scans,
present and missing signatures.
"""

from __future__ import annotations

import datetime as dt
import json
import random
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app.policy.bundle import PolicyBundle
from app.policy.engines import EmbeddedOpaEngine
from app.policy.input import Entrypoint
from app.scans.model import ScanSource, Severity, VexStatus

BEFORE = Path(__file__).parent / "assets" / "library_before"
REWRITTEN = {
    "rules/vulnerabilities.rego": BEFORE / "vulnerabilities.rego",
    "lib/outcome.rego": BEFORE / "outcome.rego",
}
NOW = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)
CASES = 400
IDS = [f"CVE-2026-{i:04d}" for i in range(12)]
NAMESPACES = ["prod", "dev", "kube-system", "shop"]
CODES = [
    "vulnerability.*",
    "vulnerability.severity",
    "signature.*",
    "scan.stale",
    "image.latest",
    "*",
]


# Each case names its parameters (data.cases[input.case]): preparing a query per
# parameter set would cost far more than the decisions.
HARNESS = """package sealgate.compare

import rego.v1

admission := d if {
\td := data.sealgate.admission.decision with data.parameters as data.cases[input.case]
}

push := d if {
\td := data.sealgate.push.decision with data.parameters as data.cases[input.case]
}

sign := d if {
\td := data.sealgate.sign.decision with data.parameters as data.cases[input.case]
}
"""


def _engine(modules: dict[str, str], data: dict[str, Any]) -> EmbeddedOpaEngine:
    return EmbeddedOpaEngine(
        PolicyBundle(modules={**modules, "compare/harness.rego": HARNESS}, data=data)
    )


@pytest.fixture(scope="module")
def libraries(default_bundle: PolicyBundle) -> Iterator[tuple[EmbeddedOpaEngine, ...]]:
    before = dict(default_bundle.modules)
    for name, path in REWRITTEN.items():
        assert name in before
        before[name] = path.read_text()
    old = _engine(before, default_bundle.data)
    new = _engine(default_bundle.modules, default_bundle.data)
    yield old, new
    old.close()
    new.close()


def _maybe(rng: random.Random, value: Any, p: float = 0.5) -> Any:
    return value if rng.random() < p else None


def _subset(rng: random.Random, items: list[Any]) -> list[Any]:
    return [item for item in items if rng.random() < 0.5]


def _finding(rng: random.Random) -> dict[str, Any]:
    finding: dict[str, Any] = {
        "id": rng.choice(IDS),
        "severity": rng.choice(list(Severity)).value,
        "package": rng.choice(["openssl", "zlib", "glibc"]),
        "fix_available": rng.random() < 0.5,
    }
    if rng.random() < 0.8:
        finding["installed"] = rng.choice(["1.0.0", "3.0.1", ""])
    fixed = rng.choice([None, None, "", "3.0.9", "1.2.3, 1.3.0"])
    if fixed is not None:
        finding["fixed"] = fixed
    if rng.random() < 0.4:
        finding["vex_status"] = rng.choice(list(VexStatus)).value
    return finding


def _allowlist_entry(rng: random.Random) -> dict[str, Any]:
    entry: dict[str, Any] = {"id": rng.choice(IDS)}
    expires = rng.choice(
        [
            "2026-06-01",
            "2026-05-31",
            "2099-01-01",
            "2026-06-01T11:59:59Z",
            "2026-06-01T12:00:01+00:00",
            "soon",
            None,
        ]
    )
    if expires is not None:
        entry["expires"] = expires
    reason = rng.choice(["not reachable", "not reachable", "", None])
    if reason is not None:
        entry["reason"] = reason
    return entry


def _exemption(rng: random.Random, index: int) -> dict[str, Any]:
    exemption: dict[str, Any] = {"name": f"exemption-{index}", "reason": "r"}
    if rng.random() < 0.6:
        exemption["namespaces"] = _subset(rng, NAMESPACES)
    if rng.random() < 0.5:
        exemption["images"] = _subset(
            rng, ["registry.example.com/team/*", "docker.io/**", "ghcr.io/other/x"]
        )
    if rng.random() < 0.6:
        exemption["rules"] = _subset(rng, CODES)
    return exemption


def _parameters(rng: random.Random) -> dict[str, Any]:
    severities = [s.value for s in Severity]
    vulnerabilities: dict[str, Any] = {
        "allowlist": [_allowlist_entry(rng) for _ in range(rng.choice([0, 0, 1, 2, 4]))]
    }
    if rng.random() < 0.4:
        vulnerabilities["deny_severities"] = _subset(rng, severities)
    if rng.random() < 0.4:
        vulnerabilities["deny_fixable_severities"] = _subset(rng, severities)
    defaults: dict[str, Any] = {
        "signatures": {
            "required": rng.random() < 0.8,
            "authorities": _subset(rng, ["ci", "release"]) if rng.random() < 0.3 else [],
            "min_authorities": rng.choice([1, 1, 2]),
        },
        "vulnerabilities": vulnerabilities,
        "scans": {"required": rng.random() < 0.3, "max_age_seconds": rng.choice([3600, 604800])},
        "tags": {"deny_latest": rng.random() < 0.7, "require_digest": rng.random() < 0.2},
    }
    mode = rng.choice(["enforce", "enforce", "warn", "audit", "bogus", None])
    if mode is not None:
        defaults["mode"] = mode
    namespaces = {
        ns: {"mode": rng.choice(["enforce", "warn", "audit"])} for ns in _subset(rng, NAMESPACES)
    }
    repositories: dict[str, Any] = {}
    if rng.random() < 0.3:
        repositories["registry.example.com/team/*"] = {
            "vulnerabilities": {"deny_severities": _subset(rng, severities)}
        }
    return {
        "defaults": defaults,
        "namespaces": namespaces,
        "repositories": repositories,
        "exemptions": [_exemption(rng, i) for i in range(rng.choice([0, 0, 1, 3]))],
    }


def _input(rng: random.Random, entrypoint: Entrypoint) -> dict[str, Any]:
    registry, repository = rng.choice(
        [("registry.example.com", "team/app"), ("docker.io", "library/nginx"), ("ghcr.io", "a/b")]
    )
    tag = rng.choice(["1.0", "latest", None])
    pinned = rng.random() < 0.3
    reference = f"{registry}/{repository}" + (f":{tag}" if tag else "")
    image: dict[str, Any] = {
        "reference": reference + ("@sha256:" + "a" * 64 if pinned else ""),
        "registry": registry,
        "repository": repository,
        "digest": "sha256:" + "a" * 64,
        "pinned": pinned,
    }
    if tag or not pinned:
        image["tag"] = tag or "latest"
    document: dict[str, Any] = {
        "version": 1,
        "entrypoint": entrypoint.value,
        "evaluated_at": NOW.isoformat().replace("+00:00", "Z"),
        "image": image,
        "authorities": _subset(rng, ["ci", "release"]),
        "signatures": [
            {"authority": a, "kind": "key", "format": "bundle"}
            for a in _subset(rng, ["ci", "release", "stranger"])
        ],
    }
    if rng.random() < 0.85:
        age = rng.choice([10, 3600, 3601, 604800, 604801, 10**7])
        document["scan"] = {
            "scanner": "trivy",
            "format": "trivy",
            "scanned_at": (NOW - dt.timedelta(seconds=age)).isoformat().replace("+00:00", "Z"),
            "age_seconds": age,
            "source": rng.choice(list(ScanSource)).value,
            "vulnerabilities": [_finding(rng) for _ in range(rng.choice([0, 1, 3, 10, 30]))],
        }
    if entrypoint is Entrypoint.admission and rng.random() < 0.9:
        document["kubernetes"] = {
            "namespace": rng.choice(NAMESPACES),
            "kind": "Pod",
            "operation": "CREATE",
        }
    return document


def _decide(engine: EmbeddedOpaEngine, entrypoint: Entrypoint, case: str, doc: Any) -> Any:
    value, _ = engine.evaluate(f"sealgate.compare.{entrypoint.value}", {**doc, "case": case})
    return value


def test_rewritten_library_decides_as_the_one_before(
    libraries: tuple[EmbeddedOpaEngine, EmbeddedOpaEngine],
) -> None:
    old, new = libraries
    rng = random.Random(7)
    parameters = {f"c{case}": _parameters(rng) for case in range(CASES)}
    for engine in libraries:
        engine._opa.add_data(parameters, path="cases")
    seen: Counter[str] = Counter()
    for case in parameters:
        entrypoint = rng.choice(list(Entrypoint))
        document = _input(rng, entrypoint)
        before = _decide(old, entrypoint, case, document)
        after = _decide(new, entrypoint, case, document)
        assert after == before, (
            f"{case}: {json.dumps(document)} with {json.dumps(parameters[case])}"
        )
        for part in ("deny", "warn", "audit", "exempted"):
            seen[part] += bool(before[part])
        seen["allow"] += before["allow"]
        seen["valid_until_ns"] += "valid_until_ns" in before
        for item in before["deny"] + before["warn"] + before["audit"]:
            seen[item["code"]] += 1
    # The generator reached every branch the rewrite touched.
    for what in (
        "deny",
        "warn",
        "audit",
        "exempted",
        "allow",
        "valid_until_ns",
        "vulnerability.severity",
        "vulnerability.fixable",
        "vulnerability.allowlist_inactive",
    ):
        assert seen[what] >= 5, (what, seen)


def test_comparison_notices_a_changed_decision(
    libraries: tuple[EmbeddedOpaEngine, EmbeddedOpaEngine], default_bundle: PolicyBundle
) -> None:
    """The comparison can fail: a library whose vulnerability message differs by one word
    gives a different decision on an input with a critical finding."""
    old, _ = libraries
    modules = dict(default_bundle.modules)
    rules = modules["rules/vulnerabilities.rego"]
    assert "vulnerability: %[3]s" in rules
    modules["rules/vulnerabilities.rego"] = rules.replace(
        "vulnerability: %[3]s", "vulnerability:: %[3]s"
    )
    changed = _engine(modules, default_bundle.data)
    try:
        rng = random.Random(1)
        document = _input(rng, Entrypoint.push)
        document["scan"] = {
            "age_seconds": 10,
            "scanned_at": "2026-06-01T11:59:50Z",
            "source": "authenticated_upload",
            "vulnerabilities": [
                {"id": "CVE-1", "severity": "critical", "package": "zlib", "fix_available": False}
            ],
        }
        for engine in (changed, old):
            engine._opa.add_data({"plain": {"defaults": {}}}, path="cases")
        assert _decide(changed, Entrypoint.push, "plain", document) != _decide(
            old, Entrypoint.push, "plain", document
        )
    finally:
        changed.close()
