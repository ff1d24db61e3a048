"""The mirror map and the signature-repository map: both forms read, bad ones refused at
start-up naming the setting, loops refused, and where evidence is kept."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.config import load_settings
from app.errors import ConfigError
from app.oci.mirrors import Mirrors
from app.oci.refs import ImageRef
from app.oci.signature_repos import SignatureRepositories

SEALGATE = str(Path(sys.executable).with_name("sealgate"))


def refusal(**values: object) -> str:
    with pytest.raises(ConfigError) as refused:
        load_settings(docker_config=None, **values)
    return refused.value.message


class TestMirrorMap:
    def test_environment_form(self) -> None:
        settings = load_settings(
            registry_mirrors="docker.io=harbor.corp/dockerhub,mirror.corp:5000; ghcr.io=m.corp"
        )
        route = Mirrors(settings.registry_mirrors).route(ImageRef.parse("nginx:1.27"))
        assert [str(location.ref) for location in route] == [
            "harbor.corp/dockerhub/library/nginx:1.27",
            "mirror.corp:5000/library/nginx:1.27",
            "docker.io/library/nginx:1.27",
        ]
        assert [location.endpoint for location in route] == [
            "harbor.corp/dockerhub",
            "mirror.corp:5000",
            "docker.io",
        ]

    def test_toml_form(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        ca = tmp_path / "ca.pem"
        ca.write_text("-")
        config = tmp_path / "sealgate.toml"
        config.write_text(
            '[registry_mirrors."index.docker.io"]\n'
            "upstream = false\n"
            '[[registry_mirrors."index.docker.io".mirror]]\n'
            'location = "harbor.corp/dockerhub"\n'
            f'ca = "{ca}"\n'
            'credentials = "harbor.corp"\n'
            '[[registry_mirrors."index.docker.io".mirror]]\n'
            'location = "mirror.corp:5000"\n'
            'capabilities = ["pull"]\n'
        )
        monkeypatch.setenv("SEALGATE_CONFIG_FILE", str(config))
        settings = load_settings()
        entry = settings.registry_mirrors["docker.io"]  # Docker Hub's aliases are one
        assert entry.upstream is False
        assert [m.location for m in entry.mirrors] == ["harbor.corp/dockerhub", "mirror.corp:5000"]
        assert entry.mirrors[0].ca == ca and entry.mirrors[0].credentials == "harbor.corp"
        mirrors = Mirrors(settings.registry_mirrors)
        # A tag is resolved only by the mirror that may; the upstream is never asked.
        tag = ImageRef.parse("nginx:1.27")
        assert [loc.endpoint for loc in mirrors.route(tag)] == ["harbor.corp/dockerhub"]
        pinned = tag.with_digest("sha256:" + "a" * 64)
        assert len(mirrors.route(pinned)) == 2
        assert len(mirrors.route(tag.with_tag("sha256-" + "a" * 64 + ".sig"))) == 2

    @pytest.mark.parametrize(
        ("value", "says"),
        [
            ("docker.io", "must be UPSTREAM=ENDPOINT"),
            ("docker.io=", "must be UPSTREAM=ENDPOINT"),
            ("docker.io=https://mirror.corp", "without a scheme"),
            ("docker.io=mirror.corp/Cache", "path component 'Cache'"),
            ("docker.io=mirror corp", "host[:port][/path]"),
            ("docker.io/library=mirror.corp", "must be a registry host[:port], not a path"),
            ("docker.io=a.corp;docker.io=b.corp", "named twice"),
        ],
    )
    def test_a_malformed_map_is_refused_naming_the_setting(self, value: str, says: str) -> None:
        message = refusal(registry_mirrors=value)
        assert "SEALGATE_REGISTRY_MIRRORS" in message
        assert says in message

    @pytest.mark.parametrize(
        ("value", "says"),
        [
            ("docker.io=registry-1.docker.io", "names itself"),
            ("a.corp=a.corp/cache", "names itself"),
            ("a.corp=b.corp;b.corp=a.corp", "mirror loop: a.corp -> b.corp -> a.corp"),
            ("a.corp=b.corp;b.corp=c.corp;c.corp=a.corp", "mirror loop"),
        ],
    )
    def test_a_mirror_loop_is_refused(self, value: str, says: str) -> None:
        message = refusal(registry_mirrors=value)
        assert "SEALGATE_REGISTRY_MIRRORS" in message and says in message

    def test_a_chain_without_a_loop_is_accepted(self) -> None:
        settings = load_settings(registry_mirrors="a.corp=b.corp;b.corp=c.corp")
        assert set(settings.registry_mirrors) == {"a.corp", "b.corp"}

    def test_toml_tables_are_checked(self, tmp_path: Path) -> None:
        message = refusal(
            registry_mirrors={"docker.io": {"mirror": [{"location": "m.corp", "proxy": "x"}]}}
        )
        assert "SEALGATE_REGISTRY_MIRRORS (docker.io.mirror.0.proxy)" in message
        message = refusal(
            registry_mirrors={
                "docker.io": {"mirror": [{"location": "m.corp", "ca": str(tmp_path / "no.pem")}]}
            }
        )
        assert "is not a file" in message
        assert "lists no mirror" in refusal(registry_mirrors={"docker.io": {"mirror": []}})
        message = refusal(
            registry_mirrors={"docker.io": {"mirror": [{"location": "m.corp", "capabilities": []}]}}
        )
        assert "'pull' capability" in message

    def test_mirrors_pass_the_allow_list(self) -> None:
        message = refusal(registry_allowlist=["docker.io"], registry_mirrors="docker.io=m.corp")
        assert "SEALGATE_REGISTRY_MIRRORS names m.corp" in message
        assert "SEALGATE_REGISTRY_ALLOWLIST" in message
        load_settings(
            registry_allowlist=["docker.io", "*.corp"], registry_mirrors="docker.io=m.corp"
        )

    def test_start_up_stops_naming_the_setting(self) -> None:
        for variable, value in (
            ("SEALGATE_REGISTRY_MIRRORS", "docker.io=mirror.corp/Cache"),
            ("SEALGATE_REGISTRY_MIRRORS", "a.corp=b.corp;b.corp=a.corp"),
            ("SEALGATE_SIGNATURE_REPOSITORIES", "docker.io/library/*=signatures"),
        ):
            env = {**os.environ, variable: value}
            done = subprocess.run(
                [SEALGATE, "serve", "--port", "1"], env=env, capture_output=True, timeout=60
            )
            assert done.returncode != 0
            assert variable in done.stderr.decode() + done.stdout.decode()


class TestSignatureRepositories:
    def test_the_image_path_is_appended(self) -> None:
        settings = load_settings(
            signature_repositories="docker.io/library/*=registry.corp/signatures;"
            "ghcr.io/**=registry.corp:5000/ghcr"
        )
        homes = SignatureRepositories(settings.signature_repositories)
        pinned = ImageRef.parse("nginx@sha256:" + "b" * 64)
        home = homes.home(pinned)
        assert str(home) == "registry.corp/signatures/library/nginx@sha256:" + "b" * 64
        assert homes.home(ImageRef.parse("ghcr.io/acme/team/api:v1")).name == (
            "registry.corp:5000/ghcr/acme/team/api"
        )
        # No rule: the image's own repository; '*' stays within one path segment.
        assert homes.home(ImageRef.parse("docker.io/acme/app")).name == "docker.io/acme/app"

    def test_cosign_style_replacement(self) -> None:
        settings = load_settings(
            signature_repositories=[
                {"pattern": "**", "repository": "registry.corp/sigs", "append_path": False}
            ]
        )
        homes = SignatureRepositories(settings.signature_repositories)
        assert homes.home(ImageRef.parse("nginx")).name == "registry.corp/sigs"

    @pytest.mark.parametrize(
        ("value", "says"),
        [
            ("docker.io/library/*", "must be PATTERN=REPOSITORY"),
            ("docker.io/library/*=signatures", "must be host[:port]/path"),
            ("docker.io/library/*=https://r.corp/sigs", "without a scheme"),
            ("docker.io/x@sha256:1=r.corp/sigs", "must not name a digest"),
        ],
    )
    def test_malformed_rules_are_refused_naming_the_setting(self, value: str, says: str) -> None:
        message = refusal(signature_repositories=value)
        assert "SEALGATE_SIGNATURE_REPOSITORIES" in message and says in message

    def test_signature_repositories_pass_the_allow_list(self) -> None:
        message = refusal(
            registry_allowlist=["docker.io"],
            signature_repositories="docker.io/**=registry.corp/signatures",
        )
        assert "SEALGATE_SIGNATURE_REPOSITORIES names registry.corp" in message
