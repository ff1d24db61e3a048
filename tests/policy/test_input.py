"""The policy input contract: models, named constructors, schema and its documentation."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import pytest

from app.errors import InputError
from app.policy.input import (
    Entrypoint,
    ImageFacts,
    PolicyInput,
    SignatureFacts,
    input_schema,
    scan_facts,
)
from app.scans.model import ScanSource
from app.verify.model import SignatureFormat, SignatureKind, VerifiedSignature
from tests.policy.conftest import NOW, InputFactory, vulnerability

DOC = Path(__file__).resolve().parents[2] / "docs" / "policy-input.md"


class TestImageFacts:
    @pytest.mark.parametrize(
        ("reference", "registry", "repository", "tag", "pinned"),
        [
            ("nginx", "docker.io", "library/nginx", "latest", False),
            ("openpolicyagent:443/opa", "openpolicyagent:443", "opa", "latest", False),
            ("ghcr.io/acme/app:v1", "ghcr.io", "acme/app", "v1", False),
            ("localhost:5000/x@sha256:" + "c" * 64, "localhost:5000", "x", None, True),
        ],
    )
    def test_from_reference(
        self, reference: str, registry: str, repository: str, tag: str | None, pinned: bool
    ) -> None:
        facts = ImageFacts.from_reference(reference)
        assert (facts.registry, facts.repository, facts.tag, facts.pinned) == (
            registry,
            repository,
            tag,
            pinned,
        )
        assert facts.reference == reference

    def test_resolved_digest_does_not_make_it_pinned(self) -> None:
        facts = ImageFacts.from_reference("nginx:1", digest="sha256:" + "d" * 64)
        assert facts.digest == "sha256:" + "d" * 64
        assert facts.pinned is False

    @pytest.mark.parametrize("bad", ["", "foo::bar", "Upper", "a b", "nginx:"])
    def test_bad_reference_is_an_input_error(self, bad: str) -> None:
        with pytest.raises(InputError):
            ImageFacts.from_reference(bad)


class TestScanFacts:
    def test_counts_exclude_vex_suppressed_and_age_is_derived(self) -> None:
        scan = scan_facts(
            scanner="grype",
            format="grype",
            scanned_at=NOW - dt.timedelta(minutes=5),
            evaluated_at=NOW,
            vulnerabilities=[
                vulnerability("CVE-1", "critical"),
                vulnerability("CVE-2", "critical", vex="not_affected"),
                vulnerability("CVE-3", "low"),
            ],
            source=ScanSource.verified_attestation,
        )
        assert scan.counts.critical == 1
        assert scan.counts.low == 1
        assert scan.age_seconds == 300
        assert len(scan.vulnerabilities) == 3


class TestPolicyInput:
    def test_round_trips_through_json(self, make_input: InputFactory) -> None:
        original = make_input(vulnerabilities=[vulnerability("CVE-1", "high", fixed="2")])
        again = PolicyInput.from_json(json.loads(json.dumps(original.to_rego())))
        assert again == original

    def test_naive_time_is_refused(self, make_input: InputFactory) -> None:
        document = make_input().to_rego()
        document["evaluated_at"] = "2026-06-01T12:00:00"
        with pytest.raises(InputError, match="evaluated_at"):
            PolicyInput.from_json(document)

    @pytest.mark.parametrize(
        "change",
        [{"version": 2}, {"entrypoint": "deploy"}, {"surprise": 1}, {"image": "nginx"}],
    )
    def test_invalid_input_is_an_input_error(
        self, make_input: InputFactory, change: dict[str, object]
    ) -> None:
        document = {**make_input().to_rego(), **change}
        with pytest.raises(InputError, match="policy input is not valid"):
            PolicyInput.from_json(document)

    def test_signature_facts_from_a_verified_signature(self) -> None:
        verified = VerifiedSignature(
            format=SignatureFormat.bundle,
            kind=SignatureKind.keyless,
            authority="ci",
            subject="https://github.com/acme/app/.github/workflows/release.yml@refs/heads/main",
            issuer="https://token.actions.githubusercontent.com",
            signed_at=NOW,
            tlog=True,
            digest="sha256:" + "e" * 64,
        )
        facts = SignatureFacts.from_verified(verified)
        assert facts.kind == "keyless" and facts.format == "bundle"
        assert facts.transparency_log is True and facts.authority == "ci"

    def test_entrypoints(self) -> None:
        assert [e.value for e in Entrypoint] == ["sign", "push", "admission"]


class TestSchemaDocumentation:
    def test_docs_carry_the_current_schema(self) -> None:
        text = DOC.read_text()
        block = re.search(
            r"<!-- schema:begin -->\n```json\n(.*?)\n```\n<!-- schema:end -->", text, re.S
        )
        assert block, "docs/policy-input.md lost its schema markers"
        assert json.loads(block.group(1)) == input_schema(), (
            "regenerate the block with `sealgate policy schema`"
        )

    def test_docs_example_is_a_valid_input(self) -> None:
        text = DOC.read_text()
        example = re.search(r"## Example\n\n```json\n(.*?)\n```", text, re.S)
        assert example
        PolicyInput.from_json(json.loads(example.group(1)))

    def test_schema_is_served(self, client: object) -> None:
        from fastapi.testclient import TestClient

        assert isinstance(client, TestClient)
        response = client.get("/v1/policy/schema")
        assert response.status_code == 200
        assert response.json() == json.loads(json.dumps(input_schema()))
