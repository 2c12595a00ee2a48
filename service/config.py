"""One validated Settings object, read from the environment (prefix ``REFRACTURE_``)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from service.domain.alert_rules import AlertConfig


class Settings(BaseSettings):
    """Every setting has a default that works on one developer machine."""

    model_config = SettingsConfigDict(env_prefix="REFRACTURE_", extra="ignore", env_nested_delimiter="__")

    environment: Literal["development", "test", "production"] = "development"

    database_url: str = "postgresql://postgres@127.0.0.1:5432/refracture"
    database_pool_min: int = Field(default=1, ge=1)
    database_pool_max: int = Field(default=8, ge=1)
    # How long a request waits for a pooled connection before answering 503.
    database_pool_timeout_s: float = Field(default=5.0, gt=0)

    redis_url: str = "redis://127.0.0.1:6379/0"
    # A per-deployment queue name keeps two installations on one Redis apart.
    celery_queue: str = "refracture"

    ehr_base_url: str | None = None
    # How results reach the EHR: auto reads its CapabilityStatement; pull sends nothing (the EHR polls refracture).
    ehr_write_mode: Literal["auto", "transaction", "conditional", "client-id", "pull"] = "auto"
    ehr_auth: Literal["none", "bearer", "smart"] = "none"
    ehr_token: SecretStr | None = None  # for ehr_auth=bearer
    ehr_token_url: str | None = None  # SMART Backend Services
    ehr_client_id: str | None = None
    ehr_private_key_file: Path | None = None  # PEM, RSA (RS384) or EC P-384 (ES384)
    ehr_key_id: str | None = None
    ehr_jwt_algorithm: Literal["RS384", "ES384"] = "RS384"
    # SMART v2 scopes (system/RiskAssessment.cu); v1 (.write) for servers that predate v2.
    ehr_scope_style: Literal["v2", "v1"] = "v2"
    ehr_connect_timeout_s: float = Field(default=5.0, gt=0)
    ehr_read_timeout_s: float = Field(default=30.0, gt=0)

    # Write-back retries: exponential backoff with full jitter up to writeback_backoff_max_s, for this long at most.
    writeback_retry_for_s: float = Field(default=86400.0, gt=0)
    writeback_backoff_base_s: float = Field(default=2.0, gt=0)
    writeback_backoff_max_s: float = Field(default=300.0, gt=0)
    writeback_lease_s: float = Field(default=120.0, gt=0)
    writeback_batch_size: int = Field(default=100, ge=1)
    writeback_interval_s: float = Field(default=5.0, gt=0)
    # The circuit opens after this many failures in a row and lets one try through after the cool-down.
    writeback_circuit_failures: int = Field(default=5, ge=1)
    writeback_circuit_cooldown_s: float = Field(default=30.0, gt=0)
    ehr_capability_refresh_s: float = Field(default=3600.0, gt=0)

    # Requests above this size get 413 before their body is read in full.
    max_body_bytes: int = Field(default=50 * 1024 * 1024, ge=1024)
    # Entries per Bundle; a bigger Bundle gets 413 (Google's executeBundle stops at 4,500).
    max_bundle_entries: int = Field(default=5000, ge=1)

    # The identifier system of the hospital's MRN (else the identifier typed MR, else the first one).
    mrn_system: str | None = None
    # Who acts in the worklist until sign-in exists (development only; the security issue adds real users).
    dev_user: str = "dev.coordinator"

    # Local codes that map to the standard codes refracture knows (docs/terminology-mapping.md).
    code_map_file: Path | None = None

    # How long a published patient-change doorbell may stay unanswered before the relay rings again.
    relay_redeliver_after_s: float = Field(default=120.0, gt=0)
    relay_batch_size: int = Field(default=500, ge=1)
    # Patients per worker task: per-task overhead (~1 ms) dwarfs per-patient work otherwise.
    relay_chunk_size: int = Field(default=200, ge=1)
    relay_interval_s: float = Field(default=15.0, gt=0)

    # The calendar the alert rules count days in, and when beat runs the daily sweep (local time of that zone).
    timezone: str = "UTC"
    sweep_time: str = Field(default="02:30", pattern=r"^([01]\d|2[0-3]):[0-5]\d$")
    sweep_batch_size: int = Field(default=500, ge=1)
    # Alert thresholds, e.g. REFRACTURE_ALERTS__DENOSUMAB_OVERDUE_DAYS=213 (defaults: shared/domain/alerts.md).
    alerts: AlertConfig = AlertConfig()

    api_host: str = "127.0.0.1"
    api_port: int = 8000

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        ZoneInfo(value)  # raises for an unknown zone: refuse to start rather than count days wrongly
        return value

    @field_validator("ehr_base_url")
    @classmethod
    def _blank_is_none(cls, value: str | None) -> str | None:
        return value or None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
