"""The worklist's read path settings: the read replica's URL (a secret, falling back to the primary), the read pool's
size and the read statement time-out (issue 15, item 6)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from service.platform.config import Settings

PRIMARY = "postgresql://app:primary-pa55@db-primary.example/refracture"
REPLICA = "postgresql://app:replica-pa55@db-replica.example/refracture"
DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def test_without_a_replica_the_reads_go_to_the_primary() -> None:
    settings = Settings(database_url=PRIMARY)
    assert settings.read_database_url is None
    assert settings.read_url == PRIMARY
    assert (settings.read_pool_min, settings.read_pool_max, settings.read_statement_timeout_s) == (1, 4, 5.0)


def test_the_replica_comes_from_the_environment_and_is_never_printed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REFRACTURE_DATABASE_URL", PRIMARY)
    monkeypatch.setenv("REFRACTURE_READ_DATABASE_URL", REPLICA)
    monkeypatch.setenv("REFRACTURE_READ_POOL_MIN", "2")
    monkeypatch.setenv("REFRACTURE_READ_POOL_MAX", "6")
    monkeypatch.setenv("REFRACTURE_READ_STATEMENT_TIMEOUT_S", "0.5")
    settings = Settings()
    assert settings.read_url == REPLICA
    assert settings.database_url.get_secret_value() == PRIMARY  # ingest and actions stay on the primary
    assert (settings.read_pool_min, settings.read_pool_max, settings.read_statement_timeout_s) == (2, 6, 0.5)
    assert "replica-pa55" not in repr(settings)
    assert "replica-pa55" not in str(settings)


def test_a_blank_replica_setting_means_the_primary(monkeypatch: pytest.MonkeyPatch) -> None:
    # A deployment template that lists the variable empty must not point the worklist at nothing.
    monkeypatch.setenv("REFRACTURE_READ_DATABASE_URL", "")
    assert Settings(database_url=PRIMARY).read_url == PRIMARY


@pytest.mark.parametrize(
    "values",
    [
        {"read_pool_min": 5, "read_pool_max": 4},
        {"read_pool_max": 0},
        {"read_pool_min": 0},
        {"read_statement_timeout_s": -1},
    ],
)
def test_impossible_read_pool_settings_refuse_to_start(values: dict[str, float]) -> None:
    with pytest.raises(ValidationError):
        Settings(**values)  # type: ignore[arg-type]


def test_no_time_out_is_a_choice() -> None:
    assert Settings(read_statement_timeout_s=0).read_statement_timeout_s == 0


def test_the_deployment_files_name_the_read_settings() -> None:
    # The operator finds the replica setting where the other database settings are listed.
    for path in (DEPLOY / "README.md", DEPLOY / "k8s" / "base" / "kustomization.yaml", DEPLOY / "compose.yaml"):
        text = path.read_text(encoding="utf-8")
        assert "REFRACTURE_READ_DATABASE_URL" in text or "refracture_read_database_url" in text, path
