"""Secure by default (issue 16, finding 8): a process nobody set a mode for runs as production, says so in its
start line, refuses development tokens and keeps /metrics, /docs and /openapi.json to itself."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from service.composition.parts import Parts
from service.platform.config import Settings
from tests.support.parts import api_app
from tests.support.paths import ARTIFACTS, ROOT
from tests.support.processes import ApiProcess
from tests.support.tokens import TOKENS

pytestmark = pytest.mark.integration


def bare_env(settings: Settings, **extra: str) -> dict[str, str]:
    """A fresh start: no REFRACTURE_ setting but where the database and the broker are."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("REFRACTURE_")}
    return {
        **env,
        "REFRACTURE_DATABASE_URL": settings.database_url.get_secret_value(),
        "REFRACTURE_REDIS_URL": settings.redis_url,
        "REFRACTURE_LOG_FORMAT": "json",
        **extra,
    }


@pytest.fixture
def fresh_api(settings: Settings, request: pytest.FixtureRequest) -> Iterator[ApiProcess]:
    api = ApiProcess(bare_env(settings), ARTIFACTS / "logs" / f"api-{request.node.name}.log")
    try:
        api.wait_ready()
        yield api
    finally:
        api.stop()


def test_the_default_is_production_and_the_settings_say_why(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REFRACTURE_ENVIRONMENT", raising=False)
    default = Settings()
    assert default.environment == "production"
    assert default.environment_reason == "environment=production (default: REFRACTURE_ENVIRONMENT not set)"
    assert not default.metrics_open
    monkeypatch.setenv("REFRACTURE_ENVIRONMENT", "development")
    assert Settings().environment_reason == "environment=development (REFRACTURE_ENVIRONMENT)"
    monkeypatch.delenv("REFRACTURE_ENVIRONMENT")
    monkeypatch.setenv("REFRACTURE_AUTH_DEV_TOKENS", json.dumps(TOKENS))
    with pytest.raises(ValueError, match="development only"):
        Settings()


def test_a_fresh_start_refuses_dev_tokens_and_hides_metrics_and_docs(fresh_api: ApiProcess) -> None:
    base = fresh_api.base_url
    for token in ("test-all", "dev-admin", "dev-ehr-interface"):
        answer = httpx.get(f"{base}/fhir/Patient/p1", headers={"Authorization": f"Bearer {token}"}, timeout=10)
        assert answer.status_code == 401
    assert httpx.get(f"{base}/metrics", timeout=10).status_code == 401
    assert httpx.get(f"{base}/docs", timeout=10).status_code == 404
    assert httpx.get(f"{base}/openapi.json", timeout=10).status_code == 404
    health = httpx.get(f"{base}/healthz", headers={"Origin": "https://elsewhere.example"}, timeout=10)
    assert "strict-transport-security" in health.headers
    assert health.headers["referrer-policy"] == "same-origin"
    assert not [h for h in health.headers if h.startswith("access-control-")], "no CORS for any origin"
    metadata = httpx.get(f"{base}/fhir/metadata", timeout=10)
    assert metadata.headers["content-type"] in ("application/fhir+json; charset=utf-8", "application/fhir+json")
    start = [json.loads(line) for line in Path(fresh_api.log_path).read_text().splitlines() if line.startswith("{")]
    assert any(
        line["message"].startswith("refracture api starting: environment=production (default: REFRACTURE_ENVIRONMENT")
        and "every bearer token is refused" in line["message"]
        for line in start
    ), start


def test_a_fresh_start_with_dev_tokens_refuses_to_start(settings: Settings) -> None:
    env = bare_env(settings, REFRACTURE_AUTH_DEV_TOKENS=json.dumps(TOKENS))
    done = subprocess.run(
        [sys.executable, "-m", "service", "api", "--port", "1"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0
    assert "REFRACTURE_AUTH_DEV_TOKENS is for development only" in done.stdout + done.stderr


def test_an_unexpected_error_answers_a_generic_500(parts: Parts) -> None:
    app = api_app(parts)

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("Patient Jane Example, MRN 123456")

    with TestClient(app, raise_server_exceptions=False) as client:
        answer = client.get("/boom")
    assert answer.status_code == 500
    assert "internal error; the request was not applied" in answer.text
    assert "Jane" not in answer.text
