"""Service settings: one ``Settings`` object read from ``SEALGATE_*`` variables.

Values come, highest priority first, from keyword arguments, the environment, a
``.env`` file and an optional TOML file named by ``SEALGATE_CONFIG_FILE``. Settings
are validated once at start-up; a bad value stops the service with a message that
names the variable. Outside ``development`` unsafe settings are refused.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
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
from app.failure_mode import FailureMode
from app.limits import (
    MAX_BLOB_BYTES,
    MAX_DECISION_CACHE_BYTES,
    MAX_MANIFEST_BYTES,
    MAX_REFERRER_PAGES,
    MAX_REFERRERS,
    MAX_SCAN_FINDINGS,
    POLICY_COMPILE_MEMORY_BYTES,
)
from app.oci.mirrors import MirrorMap, check_map, parse_mirror_env
from app.oci.signature_repos import SignatureRepository, parse_signature_env

DEFAULT_DATABASE_URL = "sqlite:///./sealgate.db"


class Environment(StrEnum):
    development = "development"
    production = "production"


# The API server waits at most 30 s for a webhook, and the generated webhook's
# ``timeoutSeconds`` is the budget plus one second.
MAX_ADMISSION_BUDGET = 29.0


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
    # `sealgate serve`: connections (and tasks) served at once, beyond which new requests
    # get 503; how long an idle keep-alive connection is held open.
    max_connections: int = Field(default=1000, ge=1)
    keepalive_timeout: int = Field(default=5, ge=1)

    # Registry access.
    insecure_registries: Annotated[list[str], NoDecode] = Field(default_factory=list)
    registry_ca_bundle: Path | None = None
    docker_config: Path | None = None
    registry_username: str | None = None
    registry_password: SecretStr | None = None
    # The one registry (host[:port]) the username and password above are sent to.
    registry_credentials_host: str | None = None
    max_referrers: int = Field(default=MAX_REFERRERS, ge=1, le=10_000)
    max_manifest_bytes: int = Field(default=MAX_MANIFEST_BYTES, ge=1024)
    max_blob_bytes: int = Field(default=MAX_BLOB_BYTES, ge=1024)
    registry_request_timeout: float = Field(default=10.0, gt=0)
    registry_total_timeout: float = Field(default=30.0, gt=0)
    registry_retries: int = Field(default=2, ge=0, le=10)
    referrers_fallback_settle_seconds: float = Field(default=0.0, ge=0, le=5)
    chunked_upload_threshold: int = Field(default=8 * 1024 * 1024, ge=1024)
    # Registries (host[:port] globs, ``*`` any characters) an image reference may name; empty
    # allows any. Link-local and cloud metadata addresses are refused unless the flag is set.
    registry_allowlist: Annotated[list[str], NoDecode] = Field(default_factory=list)
    registry_allow_link_local: bool = False
    max_referrer_pages: int = Field(default=MAX_REFERRER_PAGES, ge=1, le=1000)
    # Mirrors per upstream registry (app.oci.mirrors), tried in order before the upstream,
    # and how long a mirror that did not answer is asked only after the others.
    registry_mirrors: Annotated[MirrorMap, NoDecode] = Field(default_factory=dict)
    registry_mirror_rest_seconds: float = Field(default=30.0, ge=0, le=3600)
    # Where signatures and scans of matching images are kept (app.oci.signature_repos).
    signature_repositories: Annotated[list[SignatureRepository], NoDecode] = Field(
        default_factory=list
    )

    # Keys held by Sealgate.
    key_encryption_key: SecretStr | None = None
    key_encryption_key_file: Path | None = None

    # Keyless signing: "public-good", "staging", or the path of a ClientTrustConfig JSON file.
    sigstore_trust_config: str = "public-good"

    # Scans: sign every ingested report as a vulnerability attestation with this stored key.
    scan_attestation_key: str | None = None
    # A report with more findings is refused (413 scan.too_large), not stored.
    max_scan_findings: int = Field(default=MAX_SCAN_FINDINGS, ge=1)

    # Audit trail: records older than this many days are purged (behind a signed checkpoint),
    # by the worker at its start and then every interval (0: only `sealgate audit purge`).
    audit_retention_days: int = Field(default=180, ge=1, le=36_500)
    audit_retention_interval_seconds: float = Field(default=3600.0, ge=0)

    # Registry webhooks (POST /hooks/distribution, /hooks/harbor): the shared secret the
    # Authorization header must carry (one per source where set, else the common one), and
    # optional allow-lists of sender networks (CIDRs; one per source overrides the common one).
    hook_secret: SecretStr | None = None
    hook_secret_distribution: SecretStr | None = None
    hook_secret_harbor: SecretStr | None = None
    hook_allowed_cidrs: Annotated[list[str], NoDecode] = Field(default_factory=list)
    hook_allowed_cidrs_distribution: Annotated[list[str], NoDecode] = Field(default_factory=list)
    hook_allowed_cidrs_harbor: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Harbor's API, for full scan reports (else the webhook's summary is used).
    harbor_url: str | None = None
    harbor_username: str | None = None
    harbor_password: SecretStr | None = None

    # The inbox worker (a task of `sealgate serve`, or `sealgate worker`).
    worker_enabled: bool = True
    worker_poll_seconds: float = Field(default=1.0, gt=0, le=60)
    worker_batch_size: int = Field(default=16, ge=1, le=500)
    inbox_lease_seconds: float = Field(default=120.0, ge=1)
    inbox_max_attempts: int = Field(default=8, ge=1, le=100)
    inbox_retry_base_seconds: float = Field(default=2.0, gt=0)
    inbox_retry_max_seconds: float = Field(default=900.0, gt=0)
    # Actions on a push verdict: a "gate passed" attestation signed with this stored key,
    # and/or a JSON webhook signed with HMAC-SHA256 under the secret.
    gate_attestation_key: str | None = None
    verdict_webhook_url: str | None = None
    verdict_webhook_secret: SecretStr | None = None
    verdict_webhook_timeout: float = Field(default=5.0, gt=0, le=60)
    verdict_webhook_retries: int = Field(default=3, ge=0, le=10)

    # Policy.
    opa_url: str | None = None
    policy_dir: Path = Path("policies")
    policy_data: Path | None = None
    # Bundles calling network built-ins (http.send, net.lookup_ip_addr...) are refused
    # unless this is true.
    policy_allow_network: bool = False
    # Compiling and testing a published bundle runs in a worker process with these limits.
    policy_compile_timeout: float = Field(default=30.0, gt=0)
    policy_compile_memory: int = Field(default=POLICY_COMPILE_MEMORY_BYTES, ge=64 * 1024 * 1024)

    # Admission (the Kubernetes webhook).
    # Seconds for one whole AdmissionReview, every image in it included.
    admission_budget: float = Field(default=3.0, gt=0, le=MAX_ADMISSION_BUDGET)
    failure_mode: FailureMode = FailureMode.closed
    # On UPDATE, images already in oldObject are decided but only warned about, so a scale or a
    # rollback is never refused after a CVE is published; true makes them deny as new ones do.
    admission_recheck_unchanged: bool = False

    # The decision pipeline: the deadline of a decision asked through the API or CLI,
    # policy engine worker threads, and the shared caches (a TTL of 0 turns one off).
    decision_deadline: float = Field(default=10.0, gt=0, le=120)
    # Decision records are written in batches of at most this many, collected for at most
    # this long: together they bound what a SIGKILL can lose (app.enforce.records).
    decision_batch_size: int = Field(default=1024, ge=1, le=10_000)
    decision_flush_seconds: float = Field(default=0.05, gt=0, le=5)
    policy_workers: int = Field(default=2, ge=1, le=32)
    cache_tag_ttl: float = Field(default=30.0, ge=0)
    cache_evidence_ttl: float = Field(default=300.0, ge=0)
    cache_failure_ttl: float = Field(default=5.0, ge=0)
    cache_decision_ttl: float = Field(default=60.0, ge=0)
    cache_max_entries: int = Field(default=10_000, ge=0)
    cache_decision_max_bytes: int = Field(default=MAX_DECISION_CACHE_BYTES, ge=0)
    # How often each replica re-reads authorities, scans and the active policy version.
    refresh_interval: float = Field(default=2.0, gt=0, le=300)

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
    _split_allowlist = field_validator("registry_allowlist", mode="before")(_split_csv)

    @field_validator("registry_mirrors", mode="before")
    @classmethod
    def _mirror_env(cls, value: Any) -> Any:
        return parse_mirror_env(value) if isinstance(value, str) else value

    _check_mirrors = field_validator("registry_mirrors")(check_map)

    @field_validator("signature_repositories", mode="before")
    @classmethod
    def _signature_env(cls, value: Any) -> Any:
        return parse_signature_env(value) if isinstance(value, str) else value

    @model_validator(mode="after")
    def _mirrors_are_allowed(self) -> Settings:
        """Mirror endpoints and signature repositories pass the allow-list like any registry
        (connect-time address checks apply to them as well, in ``app.oci.egress``)."""
        if not self.registry_allowlist:
            return self
        from app.oci.egress import HostPattern  # with httpcore: only when there is a list

        patterns = [HostPattern.parse(p) for p in self.registry_allowlist]
        named = [
            ("SEALGATE_REGISTRY_MIRRORS", endpoint.host)
            for entry in self.registry_mirrors.values()
            for endpoint in entry.mirrors
        ] + [
            ("SEALGATE_SIGNATURE_REPOSITORIES", rule.repository.partition("/")[0])
            for rule in self.signature_repositories
        ]
        for setting, host in named:
            if not any(p.matches(host) for p in patterns):
                raise ValueError(
                    f"{setting} names {host}, which matches no SEALGATE_REGISTRY_ALLOWLIST entry"
                )
        return self

    @field_validator("registry_allowlist")
    @classmethod
    def _host_globs(cls, value: list[str]) -> list[str]:
        patterns = []
        for item in value:
            pattern = item.strip().lower()
            if not pattern or "/" in pattern or any(c.isspace() for c in pattern):
                raise ValueError(
                    f"{item!r} is not a registry host[:port] glob such as registry.corp, "
                    "*.corp:5000 or 127.0.0.1:*"
                )
            patterns.append(pattern)
        return patterns

    _split_cidrs = field_validator(
        "hook_allowed_cidrs",
        "hook_allowed_cidrs_distribution",
        "hook_allowed_cidrs_harbor",
        mode="before",
    )(_split_csv)

    @field_validator(
        "hook_allowed_cidrs", "hook_allowed_cidrs_distribution", "hook_allowed_cidrs_harbor"
    )
    @classmethod
    def _valid_cidrs(cls, value: list[str]) -> list[str]:
        for item in value:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError as e:
                raise ValueError(f"{item!r} is not an IP network (e.g. 10.0.0.0/8)") from e
        return value

    @model_validator(mode="after")
    def _webhook_needs_secret(self) -> Settings:
        if self.verdict_webhook_url and self.verdict_webhook_secret is None:
            raise ValueError(
                "SEALGATE_VERDICT_WEBHOOK_URL is set but SEALGATE_VERDICT_WEBHOOK_SECRET is not: "
                "verdict calls are always signed"
            )
        return self

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
            loc = [str(p) for p in err["loc"]]
            name = f"SEALGATE_{loc[0].upper()}" if loc else "settings"
            if len(loc) > 1:  # inside a table of the TOML file: say where
                name += f" ({'.'.join(loc[1:])})"
            problems.append(f"{name}: {err['msg']}")
        raise ConfigError("invalid configuration: " + "; ".join(problems)) from e


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return load_settings()
