"""A size limit on every request body, before any route reads it.

The FHIR routes check their own (larger) limit with a precise message; this one covers everything else (the JSON
API, the forms, sign-in), whose bodies are small, so that no route can be made to read an endless body into memory.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Final

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.entrypoints.api.responses import outcome_response
from service.platform.errors import Problem, refuse

__all__ = ["BodyLimitMiddleware"]

SMALL_BODY: Final = 1024 * 1024  # an alert action or a form is a few hundred bytes


class BodyLimitMiddleware:
    """413 for a body over the limit: at once when Content-Length says so, otherwise as soon as it is exceeded."""

    def __init__(self, app: ASGIApp, fhir_limit: Callable[[], int], other_limit: int = SMALL_BODY) -> None:
        self.app = app
        self.fhir_limit = fhir_limit  # read per request: the settings arrive with the services at start-up
        self.other_limit = other_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.fhir_limit() if str(scope.get("path", "")).startswith("/fhir") else self.other_limit
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > limit:
                await _too_large(scope, receive, send, limit)
                return
        received = 0
        refused = False

        async def counted() -> Message:
            nonlocal received, refused
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit and not refused:
                    # Answer 413 now and stop the route; whatever it would answer instead is dropped below.
                    refused = True
                    await _too_large(scope, receive, send, limit)
                    raise _BodyTooLarge
            return message

        async def unless_refused(message: Message) -> None:
            if not refused:
                await send(message)

        with contextlib.suppress(_BodyTooLarge):
            await self.app(scope, counted, unless_refused)


class _BodyTooLarge(Exception):
    pass


async def _too_large(scope: Scope, receive: Receive, send: Send, limit: int) -> None:
    response = outcome_response(refuse(Problem.TOO_LARGE, "too-costly", f"the body is larger than {limit} bytes"))
    await response(scope, receive, send)
