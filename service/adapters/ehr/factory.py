"""Build the EHR client from Settings (None when no EHR is configured: pull mode)."""

from __future__ import annotations

import httpx

from service.adapters.ehr.auth import Auth, BearerAuth, NoAuth, SmartBackendAuth, smart_scopes
from service.adapters.ehr.client import EhrClient
from service.platform.config import Settings

__all__ = ["make_auth", "make_ehr_client"]


def make_ehr_client(settings: Settings) -> EhrClient | None:
    """An EHR client with pooled connections, timeouts and the configured authentication.

    Raises:
        ValueError: the authentication settings are incomplete (refuse to start rather than fail every job).
    """
    if not settings.ehr_base_url:
        return None
    timeout = httpx.Timeout(settings.ehr_read_timeout_s, connect=settings.ehr_connect_timeout_s)
    http = httpx.Client(
        timeout=timeout, limits=httpx.Limits(max_connections=10, max_keepalive_connections=5), follow_redirects=False
    )
    return EhrClient(settings.ehr_base_url, make_auth(settings, http, smart_scopes(settings.ehr_scope_style)), http)


def make_auth(settings: Settings, http: httpx.Client, scopes: str) -> Auth:
    """The configured authentication to the EHR, asking SMART for ``scopes``.

    Raises:
        ValueError: the authentication settings are incomplete.
    """
    auth: Auth = NoAuth()
    if settings.ehr_auth == "bearer":
        if settings.ehr_token is None:
            raise ValueError("REFRACTURE_EHR_AUTH=bearer needs REFRACTURE_EHR_TOKEN")
        auth = BearerAuth(settings.ehr_token.get_secret_value())
    elif settings.ehr_auth == "smart":
        missing = [
            name
            for name, value in (
                ("REFRACTURE_EHR_TOKEN_URL", settings.ehr_token_url),
                ("REFRACTURE_EHR_CLIENT_ID", settings.ehr_client_id),
                ("REFRACTURE_EHR_PRIVATE_KEY_FILE", settings.ehr_private_key_file),
                ("REFRACTURE_EHR_KEY_ID", settings.ehr_key_id),
            )
            if not value
        ]
        if missing:
            raise ValueError(f"REFRACTURE_EHR_AUTH=smart needs {', '.join(missing)}")
        assert settings.ehr_private_key_file is not None
        auth = SmartBackendAuth(
            token_url=str(settings.ehr_token_url),
            client_id=str(settings.ehr_client_id),
            private_key_pem=settings.ehr_private_key_file.read_bytes(),
            key_id=str(settings.ehr_key_id),
            algorithm=settings.ehr_jwt_algorithm,
            scopes=scopes,
            http=http,
        )
    return auth
