"""Reading a FHIR request body: media type first, size limit before and while reading, strict JSON."""

from __future__ import annotations

from typing import Final

from starlette.requests import Request

from service.platform.errors import Problem, refuse

__all__ = ["read_body", "read_fhir_body"]

_ACCEPTED: Final = frozenset({"application/fhir+json", "application/json", "application/json+fhir"})


def _check_media_type(request: Request) -> None:
    header = request.headers.get("content-type", "")
    media_type, _, params = header.partition(";")
    if media_type.strip().lower() not in _ACCEPTED:
        raise refuse(
            Problem.UNSUPPORTED_MEDIA,
            "not-supported",
            f"Content-Type must be application/fhir+json (or application/json), not {header or 'missing'!r}",
        )
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset" and value.strip().strip('"').lower() not in ("utf-8", "utf8"):
            raise refuse(Problem.UNSUPPORTED_MEDIA, "not-supported", "FHIR JSON must be UTF-8")


async def read_fhir_body(request: Request, max_bytes: int) -> bytes:
    """The request body's bytes, checked for media type and size (a Bundle or a large resource is parsed off the
    event loop).

    Raises:
        RefractureError: 415 for another media type, 413 over ``max_bytes``, 400 for an empty body.
    """
    _check_media_type(request)
    raw = await read_body(request, max_bytes)
    if not raw.strip():
        raise refuse(Problem.MALFORMED, "required", "the request has no body")
    return raw


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The request body, refused as soon as it is known to be larger than ``max_bytes`` (declared or streamed).

    Raises:
        RefractureError: 413.
    """
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise _too_large(max_bytes)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise _too_large(max_bytes)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(max_bytes: int) -> Exception:
    return refuse(Problem.TOO_LARGE, "too-costly", f"the body is larger than {max_bytes} bytes")
