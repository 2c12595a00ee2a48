"""The OpenAPI document, as exported to openapi/openapi.json (a test fails when the two drift apart)."""

from __future__ import annotations

from typing import Any

from service.entrypoints.api.app import create_app

__all__ = ["openapi_document"]


def openapi_document() -> dict[str, Any]:
    """The application's OpenAPI document (built without starting the app)."""
    return create_app().openapi()
