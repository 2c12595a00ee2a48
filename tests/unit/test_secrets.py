"""Secrets come from the environment or from files, and none is in the repository."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from service.platform.config import Settings, get_settings
from tests.support.paths import ROOT

# Things that look like real credentials. Test keys are generated at run time, never committed.
_SECRET_SHAPES = [
    re.compile(r"-----BEGIN (RSA |EC |OPENSSH |ENCRYPTED )?PRIVATE KEY-----"),
    re.compile(r"AKIA[0-9A-Z]{16}"),  # an AWS access key id
    re.compile(r"eyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{20,}"),  # a signed JWT
    re.compile(r"(?i)(client_secret|password)\s*[:=]\s*['\"][^'\"\s]{12,}['\"]"),
]


def test_a_secret_can_come_from_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "refracture_oidc_client_secret").write_text("from-a-mounted-file")
    (tmp_path / "refracture_auth_dev_tokens").write_text('{"t0ken": {"sub": "dev"}}')
    monkeypatch.setenv("REFRACTURE_SECRETS_DIR", str(tmp_path))
    monkeypatch.setenv("REFRACTURE_ENVIRONMENT", "development")  # development tokens: only where named
    get_settings.cache_clear()
    try:
        settings = get_settings()
        assert settings.oidc_client_secret is not None
        assert settings.oidc_client_secret.get_secret_value() == "from-a-mounted-file"
        assert settings.dev_tokens == {"t0ken": {"sub": "dev"}}
        assert "from-a-mounted-file" not in repr(settings)  # SecretStr: never printed
    finally:
        get_settings.cache_clear()


def test_printing_the_settings_shows_no_secret() -> None:
    # database_url and the development tokens were plain strings: repr(settings) printed the password and tokens.
    settings = Settings(
        environment="development",  # development tokens are refused in production, the default
        database_url="postgresql://app:db-pa55word@db.example/refracture",
        redis_url="redis://:redis-pa55word@redis.example:6379/0",
        auth_dev_tokens={"dev-t0ken-value": {"sub": "dev"}},
        oidc_client_secret="oidc-s3cret",
        subscription_secret="feed-s3cret",
        ehr_token="ehr-t0ken",
    )
    shown = [repr(settings), str(settings), str(settings.model_dump()), settings.model_dump_json()]
    for secret in ("db-pa55word", "redis-pa55word", "dev-t0ken-value", "oidc-s3cret", "feed-s3cret", "ehr-t0ken"):
        for text in shown[:2] if secret == "redis-pa55word" else shown:
            assert secret not in text, secret
    # The values are still there for the code that needs them.
    assert settings.database_url.get_secret_value().endswith("@db.example/refracture")
    assert settings.dev_tokens == {"dev-t0ken-value": {"sub": "dev"}}


def test_development_tokens_come_from_json_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REFRACTURE_ENVIRONMENT", "development")
    monkeypatch.setenv("REFRACTURE_AUTH_DEV_TOKENS", '{"t1": {"sub": "a", "roles": ["administrator"]}}')
    assert Settings().dev_tokens == {"t1": {"sub": "a", "roles": ["administrator"]}}


def test_no_credentials_are_committed() -> None:
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    found = []
    for name in tracked.splitlines():
        path = ROOT / name
        if not path.is_file() or path.suffix in (".png", ".gz", ".zip"):
            continue
        text = path.read_text(encoding="utf-8", errors="ignore")
        found += [f"{name}: {shape.pattern[:30]}" for shape in _SECRET_SHAPES if shape.search(text)]
    assert found == []
