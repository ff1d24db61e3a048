"""Trusted roots: the built-in ones, custom ones stored by content, refusal of unusable ones."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from app.errors import InputError
from app.verify.trusted_root import TrustedRootRef


class TestTrustedRoots:
    def test_builtin_roots_come_from_the_sigstore_wheel(self) -> None:
        for name in ("public-good", "staging"):
            root = TrustedRootRef.resolve(name)
            assert json.loads(root.content)["mediaType"].startswith(
                "application/vnd.dev.sigstore.trustedroot+json"
            )
            assert root.stored == name

    def test_custom_root_is_stored_by_content(self, asset: Callable[[str], Path]) -> None:
        text = asset("sigstore/trusted-roots/cosign.trusted_root_pgi.json").read_text()
        root = TrustedRootRef.resolve(
            str(asset("sigstore/trusted-roots/cosign.trusted_root_pgi.json"))
        )
        assert root.name == "custom"
        assert root.stored == text
        assert root.describe() == "custom sha256:" + hashlib.sha256(text.encode()).hexdigest()

    @pytest.mark.parametrize("value", ["/nonexistent/root.json", "{not json", '{"mediaType": "x"}'])
    def test_refuses_unusable_roots(self, value: str) -> None:
        with pytest.raises(InputError):
            TrustedRootRef.resolve(value)

    def test_refuses_paths_when_only_content_is_allowed(self, asset: Callable[[str], Path]) -> None:
        with pytest.raises(InputError, match="file"):
            TrustedRootRef.resolve(
                str(asset("sigstore/trusted-roots/cosign.trusted_root_pgi.json")), allow_path=False
            )
