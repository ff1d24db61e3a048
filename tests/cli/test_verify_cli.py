"""``sealgate verify`` against the real registry: exit 0 with JSON, exit 1 with reasons."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

from tests.conftest import Cli
from tests.fixtures.registry import RegistryProcess
from tests.verify import cosign_wire as wire


def repository(registry: RegistryProcess) -> str:
    return f"{registry.host}/cli{secrets.token_hex(4)}/app"


def key_file(tmp_path: Path, key: wire.PrivateKey) -> str:
    path = tmp_path / f"{secrets.token_hex(3)}.pub"
    path.write_text(wire.public_pem(key))
    return str(path)


class TestVerifyCli:
    def test_key_signature_verifies_and_prints_json(
        self, sealgate: Cli, registry: RegistryProcess, tmp_path: Path
    ) -> None:
        key = wire.new_key()
        image = wire.push_signed_image_sync(registry, repository(registry), key)

        result = sealgate("verify", f"{image.name}:v1", "--key", key_file(tmp_path, key))

        assert result.exit_code == 0, result.output
        (signature,) = json.loads(result.stdout)
        assert signature["format"] == "bundle"
        assert signature["digest"] == image.digest
        assert signature["key_id"] == wire.spki_sha256(key).hex()
        assert signature["tlog"] is False

    def test_stored_authority_verifies_legacy_signature(
        self, sealgate: Cli, registry: RegistryProcess, tmp_path: Path
    ) -> None:
        key = wire.new_key("rsa-3072")
        image = wire.push_signed_image_sync(registry, repository(registry), key, legacy=True)
        added = sealgate(
            "authority", "add", "team", "--key", key_file(tmp_path, key), "--scope", "**"
        )
        assert added.exit_code == 0, added.output

        result = sealgate("verify", str(image), "--authority", "team")

        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)[0]["format"] == "legacy"

    def test_wrong_key_exits_1_with_the_reason(
        self, sealgate: Cli, registry: RegistryProcess, tmp_path: Path
    ) -> None:
        image = wire.push_signed_image_sync(registry, repository(registry), wire.new_key())

        result = sealgate("verify", str(image), "--key", key_file(tmp_path, wire.new_key()))

        assert result.exit_code == 1
        assert result.stdout == ""
        assert "no valid signature" in result.stderr
        assert "[verify.bad_signature]" in result.stderr

    def test_wrong_identity_exits_1(
        self, sealgate: Cli, registry: RegistryProcess, tmp_path: Path
    ) -> None:
        image = wire.push_signed_image_sync(registry, repository(registry), wire.new_key())

        result = sealgate(
            "verify",
            str(image),
            "--certificate-identity",
            "someone@example.com",
            "--certificate-oidc-issuer",
            "https://issuer.example",
            "--trusted-root",
            "staging",
        )

        assert result.exit_code == 1
        assert "[verify.wrong_kind]" in result.stderr

    def test_usage_errors_are_one_line(self, sealgate: Cli, tmp_path: Path) -> None:
        for args, words in [
            (("verify", "Bad::Ref", "--key", "x"), "cannot read key file"),
            (("verify", "127.0.0.1:1/a/b"), "choose exactly one"),
            (("verify", "127.0.0.1:1/a/b", "--authority", "nobody"), "no authority named"),
            # Fail closed: an unreachable registry is an error, never "unsigned" or "fine".
            (
                ("verify", "127.0.0.1:1/a/b", "--key", key_file(tmp_path, wire.new_key())),
                "[registry.",
            ),
        ]:
            result = sealgate(*args)
            assert result.exit_code == 1, (args, result.output)
            assert result.stderr.startswith("error: ") and words in result.stderr, result.stderr
            assert "Traceback" not in result.output
