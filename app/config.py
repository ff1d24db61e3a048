"""Service settings: one ``Settings`` object read from ``SEALGATE_*`` variables.

Values come, highest priority first, from keyword arguments, the environment, a
``.env`` file and an optional TOML file named by ``SEALGATE_CONFIG_FILE``. Settings
are validated once at start-up; a bad value stops the service with a message that
names the variable. Outside ``development`` unsafe settings are refused.
"""

from __future__ import annotations

import base64
import binascii
import os
import secrets
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from app.errors import ConfigError

DEFAULT_DATABASE_URL = "sqlite:///./sealgate.db"


class Environment(StrEnum):
    development = "development"
    production = "production"


def _split_csv(value: Any) -> Any:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


class Settings(BaseSettings):
    """Everything the service can be told from outside. See README for each variable."""

    model_config = SettingsConfigDict(
        env_prefix="SEALGATE_", env_file=".env", extra="ignore", frozen=True
    )

    env: Environment = Environment.development
    database_url: str = DEFAULT_DATABASE_URL
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)
    log_level: str = "INFO"

    # Registry access.
    insecure_registries: Annotated[list[str], NoDecode] = Field(default_factory=list)
    registry_ca_bundle: Path | None = None
    docker_config: Path | None = None
    registry_username: str | None = None
    registry_password: SecretStr | None = None
    # The one registry (host[:port]) the username and password above are sent to.
    registry_credentials_host: str | None = None
    max_referrers: int = Field(default=128, ge=1, le=10_000)
    max_manifest_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    max_blob_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)
    registry_request_timeout: float = Field(default=10.0, gt=0)
    registry_total_timeout: float = Field(default=30.0, gt=0)
    registry_retries: int = Field(default=2, ge=0, le=10)
    referrers_fallback_settle_seconds: float = Field(default=0.0, ge=0, le=5)
    chunked_upload_threshold: int = Field(default=8 * 1024 * 1024, ge=1024)

    # Keys held by Sealgate.
    key_encryption_key: SecretStr | None = None
    key_encryption_key_file: Path | None = None

    # Keyless signing: "public-good", "staging", or the path of a ClientTrustConfig JSON file.
    sigstore_trust_config: str = "public-good"

    # Scans: sign every ingested report as a vulnerability attestation with this stored key.
    scan_attestation_key: str | None = None

    # Policy.
    opa_url: str | None = None
    policy_dir: Path = Path("policies")
    policy_data: Path | None = None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings, dotenv_settings]
        config_file = os.environ.get("SEALGATE_CONFIG_FILE")
        if config_file:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=Path(config_file)))
        return tuple(sources)

    _split_insecure = field_validator("insecure_registries", mode="before")(_split_csv)

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, value: str) -> str:
        if not value.startswith(("sqlite", "postgresql")):
            raise ValueError("only sqlite:/// and postgresql+psycopg:// URLs are supported")
        return value

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        level = value.upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise ValueError("must be one of DEBUG, INFO, WARNING, ERROR")
        return level

    @field_validator("registry_credentials_host")
    @classmethod
    def _bare_registry_host(cls, value: str | None) -> str | None:
        if value is None:
            return None
        host = value.strip().lower()
        if not host or "://" in host or "/" in host or any(c.isspace() for c in host):
            raise ValueError("must be a registry host[:port] such as registry.example:5000")
        return host

    @model_validator(mode="after")
    def _credentials_name_their_registry(self) -> Settings:
        if (
            self.registry_username or self.registry_password is not None
        ) and self.registry_credentials_host is None:
            raise ValueError(
                "SEALGATE_REGISTRY_USERNAME/SEALGATE_REGISTRY_PASSWORD are set but "
                "SEALGATE_REGISTRY_CREDENTIALS_HOST is not: name the one registry host[:port] "
                "they belong to (they are never sent to any other registry)"
            )
        return self

    @model_validator(mode="after")
    def _refuse_unsafe_outside_development(self) -> Settings:
        if self.env is Environment.production:
            if self.database_url.startswith("sqlite"):
                raise ValueError("SEALGATE_DATABASE_URL must name PostgreSQL in production")
            if self.insecure_registries:
                raise ValueError(
                    "SEALGATE_INSECURE_REGISTRIES is refused in production; give the "
                    "registry a certificate and set SEALGATE_REGISTRY_CA_BUNDLE"
                )
        return self

    @field_validator("key_encryption_key")
    @classmethod
    def _valid_kek(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            decode_kek(value.get_secret_value())
        return value

    def kek(self) -> bytes | None:
        """The 32-byte key-encryption key, from the variable or the key file, or None."""
        if self.key_encryption_key is not None:
            return decode_kek(self.key_encryption_key.get_secret_value())
        if self.key_encryption_key_file is not None:
            try:
                text = self.key_encryption_key_file.read_text().strip()
            except OSError as e:
                raise ConfigError(
                    f"SEALGATE_KEY_ENCRYPTION_KEY_FILE {self.key_encryption_key_file}: {e.strerror}"
                ) from e
            return decode_kek(text)
        return None


# How to configure a key-encryption key, for the errors that find none.
KEK_SETUP = (
    "set SEALGATE_KEY_ENCRYPTION_KEY (base64 of 32 random bytes) or "
    "SEALGATE_KEY_ENCRYPTION_KEY_FILE; 'sealgate key new-kek --out FILE' makes one"
)


def new_kek() -> str:
    """A fresh key-encryption key: 32 bytes from the OS's CSPRNG, in standard base64."""
    text = base64.b64encode(secrets.token_bytes(32)).decode()
    decode_kek(text)  # the same checks as a configured one (never all zeros)
    return text


def decode_kek(text: str) -> bytes:
    """Decode a base64 key-encryption key; it must be exactly 32 bytes."""
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as e:
        raise ValueError("the key-encryption key must be standard base64") from e
    if len(raw) != 32:
        raise ValueError(f"the key-encryption key must decode to 32 bytes, not {len(raw)}")
    if raw == bytes(32):
        raise ValueError("the key-encryption key is all zeros; generate a random one")
    return raw


def load_settings(**overrides: Any) -> Settings:
    """Build and validate settings, turning validation errors into one readable ConfigError."""
    try:
        return Settings(**overrides)
    except ValidationError as e:
        problems = []
        for err in e.errors():
            field = ".".join(str(p) for p in err["loc"]) or "settings"
            name = f"SEALGATE_{field.upper()}" if err["loc"] else "settings"
            problems.append(f"{name}: {err['msg']}")
        raise ConfigError("invalid configuration: " + "; ".join(problems)) from e


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return load_settings()
