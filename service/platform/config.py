"""One validated Settings object, read from the environment (prefix ``REFRACTURE_``)."""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, Field, Secret, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from service.domain.alert_rules import AlertConfig
from service.security.principal import Role


class CdsIssuerSetting(BaseModel):
    """An EHR allowed to call refracture's CDS services (REFRACTURE_CDS_ISSUERS)."""

    jwks_url: str | None = None
    jku: list[str] = Field(default_factory=list)


class Settings(BaseSettings):
    """Every setting has a default that works on one developer machine."""

    model_config = SettingsConfigDict(env_prefix="REFRACTURE_", extra="ignore", env_nested_delimiter="__")

    # Secure by default: production's checks (no development tokens, no public /docs or /metrics, HSTS, Secure
    # cookies) unless development or test is asked for by name (docs/security.md, "Secure by default").
    environment: Literal["development", "test", "production"] = "production"

    # A secret (it may hold the password): repr and str of Settings never show it (tests/unit/test_secrets.py).
    database_url: SecretStr = SecretStr("postgresql://postgres@127.0.0.1:5432/refracture")
    # The schema owner's URL for `refracture migrate` (and the migration Job); the API, workers and beat use
    # database_url with the least-privileged runtime role (refracture_runtime). Unset: database_url migrates too.
    migrate_database_url: SecretStr | None = None
    database_pool_min: int = Field(default=1, ge=1)
    database_pool_max: int = Field(default=8, ge=1)
    # How long a request waits for a pooled connection before answering 503.
    database_pool_timeout_s: float = Field(default=5.0, gt=0)
    # --- the worklist's reads (docs/operations.md, "The read path") ---
    # A read replica (a streaming standby) for the worklist, its counts, its CSV export and the patient page; unset:
    # the primary. A secret like database_url. A replica answers as of its replay lag: an action just taken may show
    # a moment later (actions carry the alert's revision, so a stale page cannot overwrite anything).
    read_database_url: SecretStr | None = None
    # The reads' own pool: ingest holding every connection of database_pool_max never leaves the worklist waiting
    # for one, and the reads never take ingest's.
    read_pool_min: int = Field(default=1, ge=1)
    read_pool_max: int = Field(default=4, ge=1)
    # A read statement running longer than this is cancelled and answered 503 (0: no limit), so one pathological
    # search cannot hold a connection and a database core.
    read_statement_timeout_s: float = Field(default=5.0, ge=0)

    # May hold a password (redis://:secret@host): kept out of repr and str of Settings. A plain string for the many
    # Redis clients that take it.
    redis_url: str = Field(default="redis://127.0.0.1:6379/0", repr=False)
    # A per-deployment queue name keeps two installations on one Redis apart.
    celery_queue: str = "refracture"

    ehr_base_url: str | None = None
    # How results reach the EHR: auto reads its CapabilityStatement; pull sends nothing (the EHR polls refracture).
    ehr_write_mode: Literal["auto", "transaction", "conditional", "client-id", "pull"] = "auto"
    # Send the alerts' Tasks where the EHR takes them (false: Tasks are only served, e.g. while a Task profile of the
    # EHR refuses them and would hold up the RiskAssessment and CarePlan of the same write-back).
    ehr_write_tasks: bool = True
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
    # Bulk Data: origins (https://files.example.org) besides the EHR base's own that may receive the SMART token for
    # export files; status and file URLs elsewhere get no token, and none at a private or link-local address.
    ehr_bulk_file_hosts: list[str] = []

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
    # Bundle entries of FHIR types refracture does not use (Encounter, Claim, Practitioner …, which every EHR feed,
    # $everything answer and Synthea sample carries): skip acknowledges them unstored (200, an information issue);
    # error refuses them (422) for sites that want the sender to filter (docs/integration-guide.md, "Bundles").
    unknown_resource_types: Literal["skip", "error"] = "skip"
    # Single-resource writes (PUT, POST) arriving together are committed in one transaction by one writer thread
    # (usecases/group_commit.py): one WAL flush for the group. Off: one transaction per request, in a worker thread.
    group_commit: bool = True

    # The identifier system of the hospital's MRN (else the identifier typed MR, else the first one).
    mrn_system: str | None = None

    # --- who may call (docs/security.md) ---
    # The OAuth 2.0 / OpenID Connect issuer whose JWT access tokens are accepted, and the audience they must name.
    auth_issuer: str | None = None
    auth_audience: str | None = None
    # The issuer's JWKS; discovered from {issuer}/.well-known/openid-configuration when unset.
    auth_jwks_url: str | None = None
    # Asymmetric algorithms only (service/security/tokens.py refuses others).
    auth_algorithms: list[str] = Field(default_factory=lambda: ["RS256", "RS384", "ES256", "ES384"])
    auth_leeway_s: int = Field(default=60, ge=0, le=300)
    # Where roles are in a token (a dotted path for nested claims, e.g. realm_access.roles).
    auth_roles_claim: str = "roles"
    # Static tokens for development and tests: {"<token>": {"sub": ..., "roles": [...], "scope": "..."}}.
    # Refused in production. Like every secret, it may come from a file in REFRACTURE_SECRETS_DIR.
    # A Secret: the tokens are the keys, and repr, str and model_dump of Settings never show them.
    auth_dev_tokens: Secret[dict[str, dict[str, Any]]] = Field(default_factory=lambda: Secret({}))
    # Sign-in to the worklist page through the hospital's OpenID Connect provider (code flow with PKCE).
    oidc_client_id: str | None = None
    oidc_client_secret: SecretStr | None = None
    # The public URL of /auth/callback as registered with the provider (from the request when unset).
    oidc_redirect_url: str | None = None
    oidc_scope: str = "openid profile"
    session_ttl_s: int = Field(default=8 * 3600, ge=60)
    # A session unused this long ends (and it never outlives the signed-in token's exp).
    session_idle_s: int = Field(default=30 * 60, ge=60)
    # --- who sees which patient (docs/security.md, "Patient and organisation scoping") ---
    # The token claim listing the sites a person works for (a list or a space-separated string).
    auth_sites_claim: str = Field(default="sites", pattern=r"^[A-Za-z0-9_\-.:/]{1,100}$")
    # A person whose token has no sites claim sees no patient (instead of every patient).
    auth_sites_required: bool = False
    # Each site's Organization references ({"north": ["Organization/org-north"]}); unmapped: Organization/{site}.
    sites: dict[str, list[str]] = {}
    # How long a break-the-glass grant lasts (the person asks again after it).
    break_glass_ttl_s: int = Field(default=4 * 3600, ge=60, le=24 * 3600)
    # Requests per minute per client (0: no limit); a flood gets 429 with Retry-After.
    rate_limit_per_minute: int = Field(default=1200, ge=0)
    # Requests per minute per address that authenticate as nobody (no credentials, a junk cookie or token, an
    # unknown path), counted before any credential is looked at; past it, the address gets 429 until it slows down
    # (0: no limit). Set it above what one address's users need to sign in (about two such requests per sign-in).
    rate_limit_anonymous_per_minute: int = Field(default=120, ge=0)
    # OIDC sign-in starts per minute for the whole deployment: each stores a pending sign-in for 10 minutes, so this
    # bounds that table (0: no limit).
    rate_limit_sign_in_per_minute: int = Field(default=600, ge=0)
    # Audit rows older than this are purged by the daily sweep's housekeeping (HIPAA keeps documentation 6 years).
    # Never under 365 days: the database's purge function refuses less (migration 0013), so refuse it at start.
    audit_retention_days: int = Field(default=6 * 365, ge=365)

    # Local codes that map to the standard codes refracture knows (docs/terminology-mapping.md).
    code_map_file: Path | None = None
    # The Tasks' routing table: who owns each alert type's Task per site (JSON; docs/integration-guide.md, 'Tasks').
    task_routing_file: Path | None = None

    # How long a published patient-change doorbell may stay unanswered before the relay rings again.
    relay_redeliver_after_s: float = Field(default=120.0, gt=0)
    relay_batch_size: int = Field(default=500, ge=1)
    # Patients per worker task: per-task overhead (~1 ms) dwarfs per-patient work otherwise.
    relay_chunk_size: int = Field(default=200, ge=1)
    relay_interval_s: float = Field(default=15.0, gt=0)
    # /readyz reports "no worker" when no worker wrote its heartbeat for this long; workers write it every quarter of
    # this (at most every 30 s). docs/operations.md, "Is a worker there?".
    worker_stale_after_s: float = Field(default=120.0, ge=4)

    # The calendar the alert rules count days in, and when beat runs the daily sweep (local time of that zone).
    timezone: str = "UTC"
    sweep_time: str = Field(default="02:30", pattern=r"^([01]\d|2[0-3]):[0-5]\d$")
    sweep_batch_size: int = Field(default=500, ge=1)
    # Sweep batches in flight at once, each with its own connection (issue 15: one batch's Python work overlaps
    # another's queries). At most REFRACTURE_DATABASE_POOL_MAX - 1.
    sweep_workers: int = Field(default=2, ge=1)
    # Alert thresholds, e.g. REFRACTURE_ALERTS__DENOSUMAB_OVERDUE_DAYS=213 (defaults: docs/sources/alerts.md).
    alerts: AlertConfig = AlertConfig()

    api_host: str = "127.0.0.1"
    api_port: int = 8000

    # --- observability (docs/operations.md) ---
    # /metrics without a token (it holds no patient data) only when set to true; otherwise it needs the
    # metrics-reader role or the system/metrics.read scope (administrators too).
    metrics_public: bool | None = None
    # An OTLP/HTTP collector's base URL (e.g. http://otel-collector:4318): traces are sent there. Unset, and no
    # OTEL_EXPORTER_OTLP_ENDPOINT: no tracing at all.
    otel_endpoint: str | None = None

    # --- event feeds: Subscriptions and the catch-up poll (docs/integration-guide.md, "Event feeds") ---
    # refracture's public base URL as the EHR reaches it; setting it turns the feeds on (fetches and polls need
    # REFRACTURE_EHR_BASE_URL too). Notifications go to {this}/fhir/$subscription-hook/{subscription_feed}.
    subscription_public_url: str | None = None
    subscription_feed: str = Field(default="ehr", pattern=r"^[A-Za-z0-9\-.]{1,64}$")
    # The shared secret the EHR sends back with every notification (Subscription.channel.header), in the header
    # named here: "Authorization: Bearer <secret>" by default, "<name>: <secret>" for another header.
    subscription_secret: SecretStr | None = None
    subscription_header: str = "Authorization"
    # `refracture subscribe` makes a fresh secret each run; the one it replaces is accepted this much longer.
    subscription_secret_grace_s: int = Field(default=3600, ge=0, le=7 * 86400)
    # The periodic _lastUpdated poll (0: only when a ping, gap, empty notification or silence asks for one).
    subscription_poll_interval_s: float = Field(default=300.0, ge=0)
    # How far back a resource type's first poll reads when `refracture subscribe` set no mark.
    subscription_poll_lookback_s: float = Field(default=86400.0, gt=0)
    # Topic-based feeds: the heartbeat asked of the EHR, and how late it may be before refracture catches up.
    subscription_heartbeat_period_s: int = Field(default=300, ge=1)
    subscription_heartbeat_grace_s: float = Field(default=60.0, ge=0)
    # A SubscriptionTopic canonical URL: `refracture subscribe` registers a topic-based Subscription when the EHR
    # advertises the R4 backport, else R4 rest-hooks per resource type.
    subscription_topic: str | None = None
    subscription_content: Literal["id-only", "full-resource"] = "id-only"

    # --- CDS Hooks (docs/cds-hooks.md) ---
    # refracture's public base URL as the EHR calls it (https://refracture.hospital.example): a call's JWT must name
    # {this}/cds-services/{id} (or {this}/cds-services) in aud; cards link to {this}/worklist/patients/{id}.
    # Unset (development only): taken from the request.
    cds_base_url: str | None = None
    # The EHRs allowed to call: {"<iss>": {"jwks_url": "https://ehr/.well-known/jwks.json", "jku": ["<url>", ...]}};
    # a token's jku header must be one of its issuer's jku URLs. None configured: only development tokens call.
    cds_issuers: dict[str, CdsIssuerSetting] = Field(default_factory=dict)
    # Asymmetric algorithms only (cds-hooks 2.0 recommends ES384 and RS384).
    cds_algorithms: list[str] = Field(default_factory=lambda: ["ES384", "RS384", "ES256", "RS256"])
    # A call's token may expire at most this far ahead (the spec's CDS clients sign short-lived tokens).
    cds_token_max_lifetime_s: int = Field(default=300, ge=10, le=3600)
    # Browser-based CDS clients (a sandbox) allowed to call the CDS endpoints (CORS): exact origins such as
    # "https://sandbox.cds-hooks.org", or "*" for any. None by default: EHRs call from their servers.
    cds_cors_origins: list[str] = Field(default_factory=list)
    # FHIR servers whose fhirServer + fhirAuthorization a hook call may use to fetch what the prefetch lacks (exact
    # base URLs); the access token is sent there and nowhere else. None by default: the prefetch only.
    cds_fhir_servers: list[str] = Field(default_factory=list)

    # --- SMART App Launch of the worklist (docs/security.md, "SMART App Launch") ---
    # The EHR FHIR servers allowed to launch refracture (the launch's iss): exact base URLs. None: no /launch.
    smart_fhir_servers: list[str] = Field(default_factory=list)
    # refracture's client at the EHR's authorisation server (a confidential client when the secret is set).
    smart_client_id: str | None = None
    smart_client_secret: SecretStr | None = None
    # The public URL of /launch/callback as registered at the EHR (from the request when unset).
    smart_redirect_url: str | None = None
    # Scopes asked for besides launch (EHR launch) or launch/patient (standalone) and "openid fhirUser".
    smart_extra_scope: str = ""
    # The roles of a launched user whose fhirUser is a Practitioner or PractitionerRole and whose ID token carries
    # no roles claim (REFRACTURE_AUTH_ROLES_CLAIM). A Patient, RelatedPerson or Person gets none.
    smart_user_roles: list[str] = Field(default_factory=lambda: ["care-coordinator"])

    # --- notifications: the daily digest per owner (docs/integration-guide.md, "Notifications") ---
    # When beat sends the digest (local time of REFRACTURE_TIMEZONE); after the sweep, so the day's alerts are in.
    notify_time: str = Field(default="07:00", pattern=r"^([01]\d|2[0-3]):[0-5]\d$")
    # How much about a patient a message carries: none (counts and the worklist's link) or initials-mrn.
    notify_patient_data: Literal["none", "initials-mrn"] = "none"
    # E-mail: unset host, no e-mail. STARTTLS unless turned off (a relay on localhost); login when a user is set.
    notify_smtp_host: str | None = None
    notify_smtp_port: int = Field(default=587, ge=1, le=65535)
    notify_smtp_starttls: bool = True
    notify_smtp_user: str | None = None
    notify_smtp_password: SecretStr | None = None
    notify_from: str = "refracture@localhost"
    # Who gets each owner's e-mail: JSON {"<owner reference>": ["address", ...], "*": [...] for unrouted items}.
    notify_recipients_file: Path | None = None
    # Webhook: every owner's digest is POSTed here, signed with HMAC-SHA256 under the secret (required with it).
    notify_webhook_url: str | None = None
    notify_webhook_secret: SecretStr | None = None
    # Tries per message in a run (transient failures: backoff between them), and the backoff's base and ceiling.
    notify_max_attempts: int = Field(default=4, ge=1, le=20)
    notify_backoff_base_s: float = Field(default=2.0, gt=0)
    notify_backoff_max_s: float = Field(default=60.0, gt=0)
    # A run holds a message it sends this long: a message of a run that crashed is sent again by a run after that.
    notify_lease_s: float = Field(default=600.0, gt=0)

    @property
    def worker_heartbeat_s(self) -> float:
        """How often a worker writes its heartbeat."""
        return min(30.0, self.worker_stale_after_s / 4)

    @property
    def feeds_enabled(self) -> bool:
        """Whether the event feeds' worker side (fetches, polls) runs."""
        return self.subscription_public_url is not None and self.ehr_base_url is not None

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        ZoneInfo(value)  # raises for an unknown zone: refuse to start rather than count days wrongly
        return value

    @field_validator(
        "ehr_base_url",
        "auth_issuer",
        "auth_audience",
        "auth_jwks_url",
        "oidc_client_id",
        "smart_client_id",
        "otel_endpoint",
        "subscription_public_url",
        "notify_smtp_host",
        "notify_smtp_user",
        "notify_webhook_url",
    )
    @classmethod
    def _blank_is_none(cls, value: str | None) -> str | None:
        return value or None

    @field_validator("auth_dev_tokens", mode="before")
    @classmethod
    def _tokens_from_json(cls, value: Any) -> Any:
        # A Secret hides the type from pydantic-settings, which would otherwise decode the variable's (or the
        # mounted file's) JSON itself.
        return json.loads(value) if isinstance(value, str) else value

    @property
    def dev_tokens(self) -> dict[str, dict[str, Any]]:
        """The development tokens (REFRACTURE_AUTH_DEV_TOKENS), to verify callers with."""
        return self.auth_dev_tokens.get_secret_value()

    @model_validator(mode="after")
    def _pools_sized(self) -> Settings:
        if self.read_pool_min > self.read_pool_max:
            raise ValueError("REFRACTURE_READ_POOL_MIN is above REFRACTURE_READ_POOL_MAX")
        return self

    @property
    def read_url(self) -> str:
        """Where the worklist's reads connect: the read replica when one is set, else the primary."""
        replica = self.read_database_url.get_secret_value() if self.read_database_url else ""
        return replica or self.database_url.get_secret_value()

    @model_validator(mode="after")
    def _safe_in_production(self) -> Settings:
        if self.environment == "production" and self.dev_tokens:
            raise ValueError("REFRACTURE_AUTH_DEV_TOKENS is for development only: refusing to start in production")
        return self

    @property
    def environment_reason(self) -> str:
        """Which mode and why, for each process's start line."""
        if "environment" in self.model_fields_set:
            return f"environment={self.environment} (REFRACTURE_ENVIRONMENT)"
        return f"environment={self.environment} (default: REFRACTURE_ENVIRONMENT not set)"

    @property
    def migration_url(self) -> str:
        """Where `refracture migrate` connects: the owner's URL when there is one."""
        owner = self.migrate_database_url.get_secret_value() if self.migrate_database_url else ""
        return owner or self.database_url.get_secret_value()

    @model_validator(mode="after")
    def _cds_safe_in_production(self) -> Settings:
        # Behind a proxy the request's own URL is not what the EHR signed: production states the audience.
        if (
            self.environment == "production"
            and self.cds_issuers
            and not (self.cds_base_url or "").startswith("https://")
        ):
            raise ValueError(
                "production CDS Hooks need REFRACTURE_CDS_BASE_URL (https) when REFRACTURE_CDS_ISSUERS is set"
            )
        return self

    @model_validator(mode="after")
    def _smart_safe(self) -> Settings:
        unknown = [r for r in self.smart_user_roles if r not in Role._value2member_map_]
        if unknown:
            raise ValueError(f"REFRACTURE_SMART_USER_ROLES: unknown roles {unknown}")
        if self.environment == "production":
            plain = [u for u in (*self.smart_fhir_servers, *self.cds_fhir_servers) if not u.startswith("https://")]
            if plain:
                raise ValueError("SMART and CDS FHIR servers must be https in production")
        if self.smart_fhir_servers and not self.smart_client_id:
            raise ValueError("REFRACTURE_SMART_FHIR_SERVERS needs REFRACTURE_SMART_CLIENT_ID")
        return self

    @model_validator(mode="after")
    def _webhook_signed(self) -> Settings:
        if self.notify_webhook_url and not (
            self.notify_webhook_secret and self.notify_webhook_secret.get_secret_value()
        ):
            raise ValueError("REFRACTURE_NOTIFY_WEBHOOK_URL needs REFRACTURE_NOTIFY_WEBHOOK_SECRET: digests are signed")
        return self

    @property
    def public_url(self) -> str:
        """refracture's public base URL for links in messages: the CDS base URL, else the feeds', else the API's."""
        base = self.cds_base_url or self.subscription_public_url or f"http://{self.api_host}:{self.api_port}"
        return base.rstrip("/")

    @property
    def metrics_open(self) -> bool:
        """Whether /metrics answers without a token: only when REFRACTURE_METRICS_PUBLIC=true is set explicitly
        (least privilege: Prometheus gets the metrics-reader role or the system/metrics.read scope)."""
        return self.metrics_public is True


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once: the environment, then files in REFRACTURE_SECRETS_DIR (one per
    setting, named like the variable, e.g. ``refracture_oidc_client_secret``: how Kubernetes mounts secrets)."""
    secrets_dir = os.environ.get("REFRACTURE_SECRETS_DIR")
    return Settings(_secrets_dir=secrets_dir) if secrets_dir else Settings()
