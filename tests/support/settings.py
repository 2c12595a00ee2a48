"""Settings for a test database, and the environment a process started with them needs."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from service.devtools.local_services import LocalServices
from service.platform.config import Settings, get_settings
from tests.support.databases import SESSION
from tests.support.tokens import TOKENS

__all__ = ["command_env", "make_settings", "worker_env"]


def make_settings(services: LocalServices, database_url: str, **overrides: Any) -> Settings:
    """Settings for a test database; the queue name is unique to this test run."""
    values: dict[str, Any] = {
        "environment": "test",
        "database_url": database_url,
        "redis_url": services.redis_url,
        "celery_queue": f"refracture-test-{SESSION}",
        "database_pool_max": 4,
        "relay_redeliver_after_s": 1.0,
        "auth_dev_tokens": TOKENS,
        # Tests send many requests from one client in a burst; the limits themselves have their own tests.
        "rate_limit_per_minute": 0,
        "rate_limit_anonymous_per_minute": 0,
        "rate_limit_sign_in_per_minute": 0,
    }
    values.update(overrides)
    return Settings(**values)


def worker_env(settings: Settings) -> dict[str, str]:
    """The environment a worker process needs to serve these settings."""
    return {
        **os.environ,
        "REFRACTURE_DATABASE_URL": settings.database_url.get_secret_value(),
        "REFRACTURE_REDIS_URL": settings.redis_url,
        "REFRACTURE_CELERY_QUEUE": settings.celery_queue,
        "REFRACTURE_ENVIRONMENT": "test",
    }


@contextmanager
def command_env(monkeypatch: pytest.MonkeyPatch, **variables: str) -> Iterator[None]:
    """The refracture command in the block reads its settings afresh from these variables (each REFRACTURE_ and
    the name); the cached settings are forgotten again after it, so no other test sees them."""
    for name, value in variables.items():
        monkeypatch.setenv(f"REFRACTURE_{name}", value)
    get_settings.cache_clear()
    try:
        yield
    finally:
        get_settings.cache_clear()
