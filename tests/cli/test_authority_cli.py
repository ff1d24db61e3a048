"""``sealgate authority`` against the suite's database."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from tests.conftest import Cli
from tests.verify import cosign_wire as wire


class TestAuthorityCli:
    def test_add_list_show_remove_key_authority(self, sealgate: Cli, tmp_path: Path) -> None:
        key = wire.new_key()
        pem = tmp_path / "cosign.pub"
        pem.write_text(wire.public_pem(key))

        added = sealgate("authority", "add", "team", "--key", str(pem), "--scope", "ghcr.io/acme/*")

        assert added.exit_code == 0, added.output
        body = json.loads(added.stdout)
        assert body["keys"][0]["key_id"] == wire.spki_sha256(key).hex()
        listed = json.loads(sealgate("authority", "list").stdout)
        assert [(a["name"], a["scopes"]) for a in listed] == [("team", ["ghcr.io/acme/*"])]
        assert json.loads(sealgate("authority", "show", "team").stdout)["kind"] == "key"
        removed = sealgate("authority", "remove", "team")
        assert removed.exit_code == 0
        assert json.loads(sealgate("authority", "list").stdout) == []

    def test_add_keyless_authority_with_a_trusted_root_file(
        self, sealgate: Cli, asset: Callable[[str], Path]
    ) -> None:
        root = asset("sigstore/trusted-roots/cosign.trusted_root_pgi.json")
        added = sealgate(
            "authority",
            "add",
            "ci",
            "--certificate-identity-regexp",
            "https://github.com/acme/.*",
            "--certificate-oidc-issuer",
            "https://token.actions.githubusercontent.com",
            "--trusted-root",
            str(root),
            "--scope",
            "**",
        )
        assert added.exit_code == 0, added.output
        assert json.loads(added.stdout)["trusted_root"].startswith("custom sha256:")

    def test_refusals_are_one_line_and_exit_1(self, sealgate: Cli, tmp_path: Path) -> None:
        from cryptography.hazmat.primitives.asymmetric import ec

        from tests.verify.test_trusted_keys import pem_of

        weird = tmp_path / "p521.pub"
        weird.write_text(pem_of(ec.generate_private_key(ec.SECP521R1()).public_key()))
        cases = [
            (("authority", "add", "x", "--key", str(weird)), "not supported"),
            (("authority", "add", "x", "--key", str(tmp_path / "missing.pub")), "cannot read"),
            (("authority", "add", "x"), "give public keys"),
            (("authority", "add", "x", "--certificate-identity", "a@b"), "issuer"),
            (("authority", "remove", "nobody"), "no authority named 'nobody'"),
        ]
        for args, words in cases:
            result = sealgate(*args)
            assert result.exit_code == 1, (args, result.output)
            assert result.stderr.startswith("error: ")
            assert words in result.stderr, (args, result.stderr)
            assert "Traceback" not in result.output


class TestScopeAndIdentityOptions:
    def test_add_without_scope_is_refused_showing_the_deliberate_everything(
        self, sealgate: Cli, tmp_path: Path
    ) -> None:
        pem = tmp_path / "cosign.pub"
        pem.write_text(wire.public_pem(wire.new_key()))
        refused = sealgate("authority", "add", "team", "--key", str(pem))
        assert refused.exit_code == 1
        assert "--scope '**'" in refused.stderr
        assert "[input.authority_scope]" in refused.stderr
        assert json.loads(sealgate("authority", "list").stdout) == []

        everything = sealgate("authority", "add", "team", "--key", str(pem), "--scope", "**")
        assert everything.exit_code == 0, everything.output
        body = json.loads(everything.stdout)
        assert body["scopes"] == ["**"]
        assert body["signed_identity"] == "match-repository"

    def test_signed_identity_options(self, sealgate: Cli, tmp_path: Path) -> None:
        pem = tmp_path / "cosign.pub"
        pem.write_text(wire.public_pem(wire.new_key()))
        common = ("--key", str(pem), "--scope", "mirror.local/**")
        any_ = sealgate("authority", "add", "a", *common, "--signed-identity", "any")
        assert json.loads(any_.stdout)["signed_identity"] == "any"
        remap = sealgate(
            "authority", "add", "m", *common, "--remap-identity", "mirror.local/team=ghcr.io/team"
        )
        assert remap.exit_code == 0, remap.output
        body = json.loads(remap.stdout)
        assert body["signed_identity"] == "remap"
        assert body["remap_identity"] == [
            {"prefix": "mirror.local/team", "signed_prefix": "ghcr.io/team"}
        ]
        bad = sealgate("authority", "add", "b", *common, "--signed-identity", "exact")
        assert bad.exit_code == 1
        assert "[input.signed_identity]" in bad.stderr

    def test_help_says_scope_is_required(self, sealgate: Cli) -> None:
        shown = sealgate("authority", "add", "--help")
        assert shown.exit_code == 0
        text = " ".join(shown.stdout.split())
        assert "--scope '**'" in text or "'**' for every image" in text
        assert "--signed-identity" in text
