"""Integration support: what refracture received but did not recognise."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from service.api.deps import ContainerDep

__all__ = ["router"]

router = APIRouter(prefix="/api", tags=["Integration"])


class UnrecognisedCode(BaseModel):
    """A code seen in input and not recognised: map it in the local code map if it matters."""

    resource_type: str
    system: str
    code: str
    display: str | None
    occurrences: int
    first_seen: datetime | None
    last_seen: datetime | None


@router.get("/terminology/unrecognised", operation_id="unrecognisedCodes", summary="Codes not recognised")
async def unrecognised_codes(
    container: ContainerDep, limit: Annotated[int, Query(ge=1, le=10000)] = 200
) -> list[UnrecognisedCode]:
    """The codes seen most often that refracture did not recognise, most frequent first."""
    rows = await run_in_threadpool(container.store.unrecognised_codes, limit)
    return [
        UnrecognisedCode(
            resource_type=r.resource_type,
            system=r.system,
            code=r.code,
            display=r.display,
            occurrences=r.occurrences,
            first_seen=r.first_seen,
            last_seen=r.last_seen,
        )
        for r in rows
    ]
