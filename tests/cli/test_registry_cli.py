"""``sealgate registry resolve|referrers`` against the real registry."""

from __future__ import annotations

import asyncio
import json

import pytest
from typer.testing import CliRunner

from tests.conftest import Cli
from tests.fixtures.images import push_random_image_sync, registry_client
from tests.fixtures.registry import RegistryProcess, free_port

ARTIFACT = "application/vnd.example.sealgate.test+json"


@pytest.fixture
def registry_cli(registry: RegistryProcess) -> Cli:
    """The CLI with settings that reach the test registry (it needs no database)."""
    return Cli(
        runner=CliRunner(),
        env={
            "SEALGATE_INSECURE_REGISTRIES": registry.host,
            "SEALGATE_REGISTRY_TOTAL_TIMEOUT": "10",
            "SEALGATE_REGISTRY_RETRIES": "0",
        },
    )


class TestResolve:
    def test_prints_the_digest(self, registry_cli: Cli, registry: RegistryProcess) -> None:
        ref, manifest = push_random_image_sync(registry, "cli/resolve", tag="v1")
        result = registry_cli("registry", "resolve", f"{ref.name}:v1")
        assert result.exit_code == 0, result.output
        assert result.stdout.strip() == manifest.digest

    def test_invalid_reference_is_one_line(self, registry_cli: Cli) -> None:
        result = registry_cli("registry", "resolve", "Team/App:v1")
        assert result.exit_code == 1
        assert result.stderr.startswith("error: image reference 'Team/App:v1' is not valid")
        assert "Traceback" not in result.output

    def test_missing_tag_is_one_line(self, registry_cli: Cli, registry: RegistryProcess) -> None:
        ref, _ = push_random_image_sync(registry, "cli/missing")
        result = registry_cli("registry", "resolve", f"{ref.name}:nope")
        assert result.exit_code == 1
        assert "[registry.not_found]" in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1

    def test_unreachable_registry(self, registry_cli: Cli) -> None:
        result = registry_cli("registry", "resolve", f"127.0.0.1:{free_port()}/a/b:v1")
        assert result.exit_code == 1
        assert "[registry.unreachable]" in result.stderr
        assert "Traceback" not in result.output


class TestReferrers:
    def test_prints_the_referrers_index(self, registry_cli: Cli, registry: RegistryProcess) -> None:
        ref, _ = push_random_image_sync(registry, "cli/referrers", tag="v1")

        async def _push() -> str:
            async with registry_client(registry) as client:
                pushed = await client.push_referrer(
                    ref,
                    artifact_type=ARTIFACT,
                    layers=[(b"{}", "application/json", {})],
                    annotations={"org.example": "cli"},
                )
                await client.push_referrer(
                    ref,
                    artifact_type="application/vnd.example.other",
                    layers=[(b"[]", "application/json", {})],
                    annotations={},
                )
                return pushed.digest

        digest = asyncio.run(_push())
        result = registry_cli(
            "registry", "referrers", f"{ref.name}:v1", "--artifact-type", ARTIFACT
        )
        assert result.exit_code == 0, result.output
        index = json.loads(result.stdout)
        assert index["mediaType"] == "application/vnd.oci.image.index.v1+json"
        assert [(m["digest"], m["artifactType"], m["annotations"]) for m in index["manifests"]] == [
            (digest, ARTIFACT, {"org.example": "cli"})
        ]
        everything = json.loads(registry_cli("registry", "referrers", str(ref)).stdout)
        assert len(everything["manifests"]) == 2

    def test_no_referrers_is_an_empty_index(
        self, registry_cli: Cli, registry: RegistryProcess
    ) -> None:
        ref, _ = push_random_image_sync(registry, "cli/none")
        result = registry_cli("registry", "referrers", str(ref))
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["manifests"] == []
