"""Settings are validated at start with messages that name the variable."""

from __future__ import annotations

import base64
import os

import pytest

from app.config import Settings, load_settings
from app.errors import ConfigError
from app.failure_mode import FailureMode


class TestSettings:
    def test_defaults_are_the_embedded_ones(self, monkeypatch: pytest.MonkeyPatch) -> None:
        for key in list(os.environ):
            if key.startswith("SEALGATE_"):
                monkeypatch.delenv(key)
        settings = load_settings()
        assert settings.database_url == "sqlite:///./sealgate.db"
        assert (settings.host, settings.port) == ("127.0.0.1", 8080)
        assert settings.max_referrers == 128
        assert settings.max_manifest_bytes == 4 * 1024 * 1024

    def test_reads_environment_and_comma_separated_lists(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("SEALGATE_INSECURE_REGISTRIES", "reg.lan:5000, mirror.plant:443")
        monkeypatch.setenv("SEALGATE_PORT", "9443")
        settings = Settings()
        assert settings.insecure_registries == ["reg.lan:5000", "mirror.plant:443"]
        assert settings.port == 9443

    def test_reads_a_toml_config_file(self, monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
        path = tmp_path / "sealgate.toml"
        path.write_text("port = 9000\nmax_referrers = 16\n")
        monkeypatch.setenv("SEALGATE_CONFIG_FILE", str(path))
        settings = Settings()
        assert (settings.port, settings.max_referrers) == (9000, 16)

    def test_bad_value_names_the_variable(self) -> None:
        with pytest.raises(ConfigError, match="SEALGATE_PORT"):
            load_settings(port=70000)

    def test_production_refuses_sqlite(self) -> None:
        with pytest.raises(ConfigError, match="PostgreSQL in production"):
            load_settings(env="production", database_url="sqlite:///x.db")

    def test_production_refuses_insecure_registries(self) -> None:
        with pytest.raises(ConfigError, match="INSECURE_REGISTRIES"):
            load_settings(
                env="production",
                database_url="postgresql+psycopg://db/sealgate",
                insecure_registries=["reg:5000"],
            )

    @pytest.mark.parametrize(
        "kek",
        ["not base64!", base64.b64encode(b"short").decode(), base64.b64encode(bytes(32)).decode()],
    )
    def test_bad_key_encryption_keys_are_refused(self, kek: str) -> None:
        with pytest.raises(ConfigError, match="KEY_ENCRYPTION_KEY"):
            load_settings(key_encryption_key=kek)

    def test_good_key_encryption_key(self) -> None:
        raw = os.urandom(32)
        settings = load_settings(key_encryption_key=base64.b64encode(raw).decode())
        assert settings.kek() == raw


class TestAdmissionSettings:
    def test_defaults(self, monkeypatch: pytest.MonkeyPatch) -> None:
        for key in list(os.environ):
            if key.startswith("SEALGATE_"):
                monkeypatch.delenv(key)
        settings = load_settings()
        assert settings.admission_budget == 3.0
        assert settings.failure_mode is FailureMode.closed
        assert settings.admission_recheck_unchanged is False

    def test_reads_the_environment(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("SEALGATE_ADMISSION_BUDGET", "1.5")
        monkeypatch.setenv("SEALGATE_FAILURE_MODE", "open")
        monkeypatch.setenv("SEALGATE_ADMISSION_RECHECK_UNCHANGED", "true")
        settings = load_settings()
        assert settings.admission_budget == 1.5
        assert settings.failure_mode is FailureMode.open
        assert settings.admission_recheck_unchanged is True

    @pytest.mark.parametrize(
        ("variable", "value"),
        [
            ("SEALGATE_ADMISSION_BUDGET", "0"),
            ("SEALGATE_ADMISSION_BUDGET", "-1"),
            # The API server waits at most 30 s; the webhook's timeout is the budget + 1.
            ("SEALGATE_ADMISSION_BUDGET", "29.5"),
            ("SEALGATE_FAILURE_MODE", "ajar"),
        ],
    )
    def test_refuses_out_of_range_values(
        self, monkeypatch: pytest.MonkeyPatch, variable: str, value: str
    ) -> None:
        monkeypatch.setenv(variable, value)
        with pytest.raises(ConfigError, match=variable):
            load_settings()
