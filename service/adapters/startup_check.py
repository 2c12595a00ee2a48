"""The start-up self-check of `refracture api`, `worker` and `beat`: is everything they need importable and there?

One line per check, and the process stops (exit status 1) when one it cannot work without fails:

- the broker: kombu's Redis transport imports, and Redis answers at REFRACTURE_REDIS_URL. Fatal for the worker and
  beat (they do nothing else); a warning for the API, which keeps accepting data while the broker is down (it waits
  in PostgreSQL for the relay; /readyz says "degraded");
- the database: psycopg imports, and PostgreSQL answers at REFRACTURE_DATABASE_URL. Fatal for all three; a database
  without refracture's tables (or with migrations pending) is a warning ("run refracture migrate");
- the EHR client: httpx imports and the configured client builds (authentication settings complete, key file
  readable): fatal. When REFRACTURE_EHR_BASE_URL is set, its /metadata is asked once; an EHR that does not answer is a
  warning, not a failure: write-backs wait in their outbox and are retried until it is back.

Lines name the setting and its address with any password masked; messages are shown (no patient data is at hand).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Final, Literal

from service.platform.config import Settings
from service.platform.log_redaction import describe, handling_patient_data, mask_credentials

__all__ = ["Check", "Role", "run_checks", "startup_check"]

log = logging.getLogger("refracture.startup")

Role = Literal["api", "worker", "beat"]
TIMEOUT_S: Final = 3.0


@dataclass(frozen=True, slots=True)
class Check:
    """One check's outcome: ``ok``, or a warning, or (``fatal``) a reason not to start."""

    name: str
    ok: bool
    fatal: bool
    line: str


def startup_check(settings: Settings, role: Role, timeout_s: float = TIMEOUT_S) -> bool:
    """Run the checks, log one line each; True when the process may start."""
    checks = run_checks(settings, role, timeout_s)
    for check in checks:
        if check.ok:
            log.info("start-up check: %s", check.line)
        elif check.fatal:
            log.critical("start-up check failed: %s", check.line)
        else:
            log.warning("start-up check: %s", check.line)
    failed = [check.name for check in checks if check.fatal]
    if failed:
        log.critical("refracture %s not started: the start-up check failed for %s", role, " and ".join(failed))
    return not failed


def run_checks(settings: Settings, role: Role, timeout_s: float = TIMEOUT_S) -> list[Check]:
    """The broker, the database and the EHR client, in that order."""
    with handling_patient_data(False):
        return [_broker(settings, role, timeout_s), _database(settings, timeout_s), _ehr(settings, timeout_s)]


def _said(exc: BaseException) -> str:
    return describe(exc, force=True)


def _broker(settings: Settings, role: Role, timeout_s: float) -> Check:
    where = f"REFRACTURE_REDIS_URL={mask_credentials(settings.redis_url)}"
    try:
        from kombu import Connection  # noqa: PLC0415 - the check is of the import itself

        connection = Connection(settings.redis_url, connect_timeout=timeout_s)
        connection.transport  # noqa: B018 - resolves and imports the transport (kombu's Redis one needs `packaging`)
    except Exception as exc:  # noqa: BLE001 - whatever stops the import is reported
        return Check("broker", False, True, f"the broker transport for {where} cannot be loaded: {_said(exc)}")
    try:
        connection.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=math.ceil(timeout_s))
    except Exception as exc:  # noqa: BLE001
        fatal = role != "api"
        effect = "" if fatal else "; the API accepts data meanwhile (it waits in PostgreSQL), /readyz says degraded"
        return Check("broker", False, fatal, f"the broker at {where} does not answer: {_said(exc)}{effect}")
    finally:
        connection.release()
    return Check("broker", True, False, f"the broker at {where} answers")


def _database(settings: Settings, timeout_s: float) -> Check:
    where = f"REFRACTURE_DATABASE_URL={mask_credentials(settings.database_url.get_secret_value())}"
    try:
        import psycopg  # noqa: PLC0415 - the check is of the import itself

        from service.adapters.postgres.migrate import available_migrations  # noqa: PLC0415
    except Exception as exc:  # noqa: BLE001
        return Check("database", False, True, f"the database driver cannot be loaded: {_said(exc)}")
    try:
        with psycopg.connect(
            settings.database_url.get_secret_value(), connect_timeout=max(1, math.ceil(timeout_s))
        ) as conn:
            found = conn.execute("SELECT to_regclass('schema_migration') IS NOT NULL").fetchone()
            exists = bool(found and found[0])
            applied = {int(row[0]) for row in conn.execute("SELECT version FROM schema_migration")} if exists else set()
    except Exception as exc:  # noqa: BLE001
        said = _said(exc)
        if 'database "' in said and "does not exist" in said:
            said += "; `refracture migrate` creates it"
        return Check("database", False, True, f"the database at {where} does not answer: {said}")
    pending = [m.version for m in available_migrations() if m.version not in applied]
    if pending:
        return Check(
            "database",
            False,
            False,
            f"the database at {where} answers but {len(pending)} migration(s) are not applied: run refracture migrate",
        )
    return Check("database", True, False, f"the database at {where} answers")


def _ehr(settings: Settings, timeout_s: float) -> Check:
    try:
        import httpx  # noqa: PLC0415 - the check is of the import itself

        from service.adapters.ehr.factory import make_ehr_client  # noqa: PLC0415

        client = make_ehr_client(settings)
    except Exception as exc:  # noqa: BLE001
        return Check("EHR client", False, True, f"the EHR client cannot be built: {_said(exc)}")
    if client is None:
        return Check("EHR client", True, False, "no EHR configured (REFRACTURE_EHR_BASE_URL unset): results are pulled")
    client.close()
    base = str(settings.ehr_base_url).rstrip("/")
    where = f"REFRACTURE_EHR_BASE_URL={mask_credentials(base)}"
    try:
        answer = httpx.get(f"{base}/metadata", timeout=timeout_s, follow_redirects=False)
    except Exception as exc:  # noqa: BLE001
        return Check(
            "EHR client",
            False,
            False,
            f"the EHR at {where} does not answer: {_said(exc)}; write-backs wait in their outbox and are retried",
        )
    return Check("EHR client", True, False, f"the EHR at {where} answers (HTTP {answer.status_code})")
