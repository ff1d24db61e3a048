"""Policy test fixtures: the default bundle, policy inputs, and engines of both kinds.

``engine_factory`` is parametrised over the embedded engine and ``OpaServerEngine``
talking to the OPA REST stand-in, so every test that uses it runs on both.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from app.policy.bundle import PolicyBundle
from app.policy.engines import EmbeddedOpaEngine, OpaServerEngine, PolicyEngine
from app.policy.input import (
    Entrypoint,
    ImageFacts,
    KubernetesContext,
    PolicyInput,
    PolicyVulnerability,
    SignatureFacts,
    build_input,
    scan_facts,
)
from app.scans.model import ScanSource, Severity
from tests.fixtures.opa_standin import OpaRestStandIn, opa_standin  # noqa: F401

POLICIES = Path(__file__).resolve().parents[2] / "policies"
NOW = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)

EngineFactory = Callable[[PolicyBundle], PolicyEngine]
InputFactory = Callable[..., PolicyInput]
BundleWithData = Callable[[dict[str, Any]], PolicyBundle]


@pytest.fixture(scope="session")
def default_bundle() -> PolicyBundle:
    return PolicyBundle.from_directory(POLICIES)


@pytest.fixture(params=["embedded", "opa-server"])
def engine_factory(request: pytest.FixtureRequest) -> Iterator[EngineFactory]:
    """Builds engines of one kind loaded with a bundle (closed after the test)."""
    engines: list[PolicyEngine] = []

    def build(bundle: PolicyBundle) -> PolicyEngine:
        engine: PolicyEngine
        if request.param == "embedded":
            engine = EmbeddedOpaEngine()
        else:
            standin: OpaRestStandIn = request.getfixturevalue("opa_standin")
            engine = OpaServerEngine(standin.url)
        engines.append(engine)
        engine.load(bundle)
        return engine

    yield build
    for engine in engines:
        engine.close()


def vulnerability(
    vuln_id: str, severity: str, *, fixed: str | None = None, vex: str | None = None
) -> PolicyVulnerability:
    return PolicyVulnerability.model_validate(
        {
            "id": vuln_id,
            "severity": Severity(severity),
            "package": "openssl",
            "installed": "3.0.1",
            "fixed": fixed,
            "fix_available": fixed is not None,
            "vex_status": vex,
        }
    )


def signature(authority: str) -> SignatureFacts:
    return SignatureFacts(authority=authority, kind="key", key_id="ab12", format="bundle")


@pytest.fixture
def make_input() -> InputFactory:
    """A policy input for a signed, scanned image, with keyword overrides.

    ``vulnerabilities`` (list) or ``scan=None`` change the scan; ``namespace`` adds a
    Kubernetes context; ``reference``, ``authorities``, ``signatures``, ``entrypoint``,
    ``scanned_at`` replace the defaults.
    """

    def build(**overrides: Any) -> PolicyInput:
        reference = overrides.pop("reference", "registry.example.com/team/app:1.0")
        entrypoint = overrides.pop("entrypoint", Entrypoint.admission)
        vulns = overrides.pop("vulnerabilities", [])
        scanned_at = overrides.pop("scanned_at", NOW - dt.timedelta(hours=1))
        scan = scan_facts(
            scanner="trivy",
            format="trivy",
            scanned_at=scanned_at,
            evaluated_at=NOW,
            vulnerabilities=vulns,
            source=overrides.pop("scan_source", ScanSource.authenticated_upload),
        )
        if "scan" in overrides:
            scan = overrides.pop("scan")
        namespace = overrides.pop("namespace", "prod")
        kubernetes = (
            KubernetesContext(namespace=namespace, kind="Pod", name="web", operation="CREATE")
            if entrypoint is Entrypoint.admission
            else None
        )
        fields: dict[str, Any] = {
            "entrypoint": entrypoint,
            "image": ImageFacts.from_reference(reference, digest="sha256:" + "a" * 64),
            "authorities": ["ci"],
            "signatures": [signature("ci")],
            "scan": scan,
            "kubernetes": kubernetes,
            "evaluated_at": NOW,
        }
        fields.update(overrides)
        return build_input(**fields)

    return build


@pytest.fixture
def bundle_with_data(default_bundle: PolicyBundle) -> BundleWithData:
    """The default library with ``parameters`` merged over its data.json."""
    from app.policy.bundle import deep_merge

    def build(parameters: dict[str, Any]) -> PolicyBundle:
        return PolicyBundle(
            modules=default_bundle.modules,
            data=deep_merge(default_bundle.data, override=parameters),
        )

    return build
