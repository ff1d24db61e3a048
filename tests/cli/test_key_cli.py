"""``sealgate key`` against the suite's database."""

from __future__ import annotations

import base64
import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from app.config import load_settings
from tests.conftest import Cli
from tests.signing.keyfiles import private_pem


def _write_pem(path: Path, key: PrivateKeyTypes, password: bytes | None = None) -> Path:
    path.write_bytes(private_pem(key, password))
    return path


class TestKeyCli:
    def test_generate_list_public_disable(self, sealgate: Cli) -> None:
        made = sealgate("key", "generate", "release", "--algorithm", "ecdsa-p384", "--scope", "**")
        assert made.exit_code == 0, made.output
        info = json.loads(made.stdout)
        assert info["algorithm"] == "ecdsa-p384"
        listed = json.loads(sealgate("key", "list").stdout)
        assert [(k["name"], k["status"]) for k in listed] == [("release", "active")]
        public = sealgate("key", "public", "release")
        assert public.exit_code == 0
        assert public.stdout == info["public_key_pem"]
        serialization.load_pem_public_key(public.stdout.encode())
        disabled = sealgate("key", "disable", "release")
        assert json.loads(disabled.stdout)["status"] == "disabled"
        assert sealgate("key", "public", "release").exit_code == 0

    def test_default_is_ecdsa_p256(self, sealgate: Cli) -> None:
        assert (
            json.loads(sealgate("key", "generate", "k", "--scope", "**").stdout)["algorithm"]
            == "ecdsa-p256"
        )

    def test_import_with_password_env(self, sealgate: Cli, tmp_path: Path) -> None:
        pem = _write_pem(tmp_path / "k.pem", ec.generate_private_key(ec.SECP256R1()), b"pw")
        sealgate.env["KEY_PASSWORD"] = "pw"
        result = sealgate(
            "key",
            "import",
            "imp",
            "--scope",
            "**",
            "--pem",
            str(pem),
            "--password-env",
            "KEY_PASSWORD",
        )
        assert result.exit_code == 0, result.output
        assert "PRIVATE" not in result.output
        missing = sealgate(
            "key",
            "import",
            "x",
            "--scope",
            "**",
            "--pem",
            str(pem),
            "--password-env",
            "NOT_SET_VAR",
        )
        assert missing.exit_code == 1
        assert "NOT_SET_VAR is not set" in missing.stderr

    def test_refusals_are_one_line(self, sealgate: Cli, tmp_path: Path) -> None:
        pem = _write_pem(tmp_path / "dsa.pem", dsa.generate_private_key(key_size=2048))
        refused = sealgate("key", "import", "d", "--scope", "**", "--pem", str(pem))
        assert refused.exit_code == 1
        assert refused.stderr.startswith("error: DSA keys are not supported")
        assert "Traceback" not in refused.output
        absent = sealgate(
            "key", "import", "d", "--scope", "**", "--pem", str(tmp_path / "absent.pem")
        )
        assert absent.exit_code == 1
        assert "cannot read" in absent.stderr
        bad = sealgate("key", "generate", "k", "--algorithm", "dsa")
        assert bad.exit_code == 1
        assert "unknown key algorithm 'dsa'" in bad.stderr
        assert sealgate("key", "disable", "nope").exit_code == 1

    def test_no_kek_refuses_generation(self, sealgate: Cli) -> None:
        del sealgate.env["SEALGATE_KEY_ENCRYPTION_KEY"]
        result = sealgate("key", "generate", "k", "--scope", "**")
        assert result.exit_code == 1
        assert "no key-encryption key is configured" in result.stderr
        assert "'sealgate key new-kek --out FILE' makes one" in result.stderr


@pytest.fixture
def no_umask() -> Iterator[None]:
    """A umask that would leave a new file world-readable, unless the command says 0600."""
    previous = os.umask(0)
    try:
        yield
    finally:
        os.umask(previous)


class TestNewKek:
    def test_prints_a_fresh_kek_that_settings_accept(self, sealgate: Cli) -> None:
        first, second = sealgate("key", "new-kek"), sealgate("key", "new-kek")
        assert first.exit_code == 0 and second.exit_code == 0, first.output
        kek = first.stdout.strip()
        assert len(base64.b64decode(kek, validate=True)) == 32
        assert load_settings(key_encryption_key=kek).kek() == base64.b64decode(kek)
        assert second.stdout.strip() != kek

    def test_out_writes_a_file_only_its_owner_reads(
        self, sealgate: Cli, tmp_path: Path, no_umask: None
    ) -> None:
        out = tmp_path / "kek"
        result = sealgate("key", "new-kek", "--out", str(out))
        assert result.exit_code == 0, result.output
        assert result.stdout == ""  # the key goes to the file only
        assert stat.S_IMODE(out.stat().st_mode) == 0o600
        settings = load_settings(key_encryption_key_file=out)
        assert settings.kek() is not None

    def test_out_never_overwrites_a_file(self, sealgate: Cli, tmp_path: Path) -> None:
        out = tmp_path / "kek"
        out.write_text("the key every stored key is encrypted under\n")
        result = sealgate("key", "new-kek", "--out", str(out))
        assert result.exit_code == 1
        assert "exists; a key-encryption key is never overwritten" in result.stderr
        assert out.read_text() == "the key every stored key is encrypted under\n"


class TestKeyScopes:
    def test_generate_and_import_need_a_scope(self, sealgate: Cli, tmp_path: Path) -> None:
        pem = _write_pem(tmp_path / "k.pem", ec.generate_private_key(ec.SECP256R1()))
        for args in (("key", "generate", "k"), ("key", "import", "k", "--pem", str(pem))):
            refused = sealgate(*args)
            assert refused.exit_code == 1, refused.output
            assert "--scope '**'" in refused.stderr
            assert "[input.key_scope]" in refused.stderr
        assert json.loads(sealgate("key", "list").stdout) == []

    def test_scopes_are_listed_and_replaced(self, sealgate: Cli) -> None:
        made = sealgate(
            "key", "generate", "k", "--scope", "ghcr.io/acme/*", "--scope", "ghcr.io/x/*"
        )
        assert json.loads(made.stdout)["scopes"] == ["ghcr.io/acme/*", "ghcr.io/x/*"]
        narrowed = sealgate("key", "set-scopes", "k", "--scope", "ghcr.io/acme/api")
        assert narrowed.exit_code == 0, narrowed.output
        assert json.loads(sealgate("key", "list").stdout)[0]["scopes"] == ["ghcr.io/acme/api"]
        assert sealgate("key", "set-scopes", "k").exit_code == 1

    def test_a_scope_change_is_audited_from_the_cli(self, sealgate: Cli) -> None:
        sealgate("key", "generate", "k", "--scope", "ghcr.io/acme/*")
        assert sealgate("key", "set-scopes", "k", "--scope", "ghcr.io/acme/api").exit_code == 0
        exported = sealgate("audit", "export")
        assert exported.exit_code == 0, exported.output
        records = [json.loads(line) for line in exported.stdout.splitlines()]
        (changed,) = [r for r in records if r["kind"] == "key.scopes"]
        assert (changed["actor"], changed["source"], changed["object"]) == ("cli", "cli", "key/k")
        assert changed["details"]["scopes"] == ["ghcr.io/acme/api"]
        assert changed["details"]["previous_scopes"] == ["ghcr.io/acme/*"]
        assert sealgate("audit", "verify").exit_code == 0
