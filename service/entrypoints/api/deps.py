"""Typed FastAPI dependencies."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from service.composition.bootstrap import Container

__all__ = ["ContainerDep", "fhir_base"]


def get_container(request: Request) -> Container:
    """The process's container, built at start-up."""
    container: Container = request.app.state.container
    return container


ContainerDep = Annotated[Container, Depends(get_container)]


def fhir_base(request: Request) -> str:
    """The absolute URL of this server's FHIR base."""
    return str(request.base_url).rstrip("/") + "/fhir"
