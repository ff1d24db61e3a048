"""Credentials from settings and Docker config files, and ``WWW-Authenticate`` parsing."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from app.config import load_settings
from app.errors import ConfigError
from app.oci.auth import Challenge, Credentials, CredentialStore, parse_docker_config


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


class TestChallenge:
    def test_bearer_with_quoted_commas(self) -> None:
        challenge = Challenge.parse(
            'Bearer realm="https://auth.example/token",service="registry.example",'
            'scope="repository:team/app:pull,push"'
        )
        assert challenge == Challenge(
            scheme="bearer",
            params={
                "realm": "https://auth.example/token",
                "service": "registry.example",
                "scope": "repository:team/app:pull,push",
            },
        )

    def test_basic_and_absent(self) -> None:
        assert Challenge.parse('Basic realm="x"') == Challenge("basic", {"realm": "x"})
        assert Challenge.parse(None) is None
        assert Challenge.parse("") is None


class TestDockerConfig:
    def test_auth_field_and_username_password_forms(self) -> None:
        found = parse_docker_config(
            {
                "auths": {
                    "https://index.docker.io/v1/": {"auth": _b64("hub:pa:ss")},
                    "127.0.0.1:5000": {"username": "u", "password": "p"},
                    "ghcr.io": {"identitytoken": "not supported"},
                }
            }
        )
        assert found == {
            "index.docker.io": Credentials("hub", "pa:ss"),
            "127.0.0.1:5000": Credentials("u", "p"),
        }

    @pytest.mark.parametrize(
        ("document", "problem"),
        [
            ([], "not a JSON object"),
            ({"auths": "x"}, "'auths' is not an object"),
            ({"auths": {"r": "x"}}, "not an object"),
            ({"auths": {"r": {"auth": "%%%"}}}, "not base64"),
            ({"auths": {"r": {"auth": _b64("nocolon")}}}, "no ':'"),
        ],
    )
    def test_malformed(self, document: object, problem: str) -> None:
        with pytest.raises(ValueError, match=problem):
            parse_docker_config(document)

    def test_docker_hub_aliases(self, tmp_path: Path) -> None:
        config = tmp_path / "config.json"
        config.write_text(
            json.dumps({"auths": {"https://index.docker.io/v1/": {"auth": _b64("a:b")}}})
        )
        store = CredentialStore(settings=load_settings(docker_config=config))
        assert store.lookup("docker.io") == Credentials("a", "b")
        assert store.lookup("ghcr.io") is None

    def test_settings_take_priority_for_their_host_only(self, tmp_path: Path) -> None:
        config = tmp_path / "config.json"
        config.write_text(
            json.dumps(
                {
                    "auths": {
                        "r.example": {"auth": _b64("file:user")},
                        "other.example": {"auth": _b64("other:pw")},
                    }
                }
            )
        )
        store = CredentialStore(
            settings=load_settings(
                docker_config=config,
                registry_username="env",
                registry_password="secret",
                registry_credentials_host="R.example",
            )
        )
        assert store.lookup("r.example") == Credentials("env", "secret")
        assert store.lookup("other.example") == Credentials("other", "pw")
        assert store.lookup("evil.example") is None
        assert store.lookup("r.example:5000") is None

    def test_settings_credentials_for_docker_hub(self) -> None:
        store = CredentialStore(
            settings=load_settings(
                docker_config=None,
                registry_username="hub",
                registry_password="pw",
                registry_credentials_host="index.docker.io",
            )
        )
        assert store.lookup("docker.io") == Credentials("hub", "pw")
        assert store.lookup("ghcr.io") is None

    @pytest.mark.parametrize(
        "values",
        [
            {"registry_username": "u", "registry_password": "p"},
            {"registry_username": "u"},
            {"registry_password": "p"},
        ],
    )
    def test_settings_credentials_without_their_host_are_refused(
        self, values: dict[str, str]
    ) -> None:
        with pytest.raises(ConfigError) as caught:
            load_settings(**values)
        for variable in (
            "SEALGATE_REGISTRY_USERNAME",
            "SEALGATE_REGISTRY_PASSWORD",
            "SEALGATE_REGISTRY_CREDENTIALS_HOST",
        ):
            assert variable in str(caught.value)

    @pytest.mark.parametrize("host", ["https://r.example", "r.example/team", " ", "r .example"])
    def test_credentials_host_must_be_a_bare_host(self, host: str) -> None:
        with pytest.raises(ConfigError, match="SEALGATE_REGISTRY_CREDENTIALS_HOST"):
            load_settings(registry_credentials_host=host)

    def test_explicit_config_that_is_missing_or_broken(self, tmp_path: Path) -> None:
        missing = CredentialStore(settings=load_settings(docker_config=tmp_path / "nope.json"))
        with pytest.raises(ConfigError, match="does not exist"):
            missing.lookup("r.example")
        broken = tmp_path / "broken.json"
        broken.write_text("{")
        with pytest.raises(ConfigError, match="not usable"):
            CredentialStore(settings=load_settings(docker_config=broken)).lookup("r.example")

    def test_password_is_not_in_repr(self) -> None:
        assert "hunter2" not in repr(Credentials("u", "hunter2"))
