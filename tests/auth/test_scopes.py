"""Image globs and token scopes."""

from __future__ import annotations

import pytest

from app.auth.scopes import Scope
from app.errors import InputError
from app.oci.globs import glob_matches, validate_glob


class TestGlobs:
    @pytest.mark.parametrize(
        ("glob", "name", "expected"),
        [
            ("ghcr.io/acme/*", "ghcr.io/acme/api", True),
            ("ghcr.io/acme/*", "ghcr.io/acme/team/api", False),
            ("ghcr.io/acme/**", "ghcr.io/acme/team/api", True),
            ("ghcr.io/acme/**", "ghcr.io/acmeevil/api", False),
            ("**", "docker.io/library/nginx", True),
            ("docker.io/library/nginx", "docker.io/library/nginx", True),
            ("docker.io/library/nginx", "docker.io/library/nginx-evil", False),
            ("127.0.0.1:5000/*", "127.0.0.1:5000/app", True),
            ("127.0.0.1:5000/*", "127.0.0.1:50001/app", False),
            ("reg.lan/a.b/*", "reg.lan/aXb/c", False),  # '.' is literal
        ],
    )
    def test_matching(self, glob: str, name: str, expected: bool) -> None:
        assert glob_matches(glob, name) is expected

    @pytest.mark.parametrize("glob", ["", "ghcr.io/a b", "ghcr.io/a@sha256:00", "ghcr.io/a:latest"])
    def test_invalid_globs_are_refused(self, glob: str) -> None:
        with pytest.raises(InputError):
            validate_glob(glob)


class TestScopes:
    def test_admin_allows_everything(self) -> None:
        assert Scope.parse("admin").allows("sign", "any.registry/x/y")

    def test_action_and_glob_must_both_match(self) -> None:
        scope = Scope.parse("sign:ghcr.io/acme/*")
        assert scope.allows("sign", "ghcr.io/acme/api")
        assert not scope.allows("scan", "ghcr.io/acme/api")
        assert not scope.allows("sign", "ghcr.io/other/api")

    @pytest.mark.parametrize("text", ["sign", "delete:**", "sign:", "sign:a@sha256:1"])
    def test_malformed_scopes_are_refused(self, text: str) -> None:
        with pytest.raises(InputError):
            Scope.parse(text)
