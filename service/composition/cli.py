"""The CLI commands' composition: each command takes the parts it runs from a Parts that closes when it ends."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from service.adapters.ehr.bulk import BulkDataClient, make_bulk_client
from service.adapters.postgres.bulk_import import PostgresImportStore
from service.composition.core import build_core
from service.composition.parts import Parts
from service.platform.config import Settings
from service.usecases.bulk_export import BulkExporter
from service.usecases.bulk_import import BulkImporter

__all__ = ["BulkImport", "command_parts", "make_bulk_import"]


@contextlib.contextmanager
def command_parts(settings: Settings | None = None) -> Iterator[Parts]:
    """The parts over the environment's settings; only what the command asks for is built, and all of it closed."""
    parts = Parts(build_core(settings))
    try:
        yield parts
    finally:
        parts.close()


@dataclass(slots=True)
class BulkImport:
    """`refracture import`'s handlers: local NDJSON files, and the EHR's $export when one is configured."""

    importer: BulkImporter
    exporter: BulkExporter | None  # None without REFRACTURE_EHR_BASE_URL
    gateway: BulkDataClient | None

    def close(self) -> None:
        """Close the Bulk Data client's connections."""
        if self.gateway is not None:
            self.gateway.close()


def make_bulk_import(parts: Parts, batch_size: int, sleep: Callable[[float], None] = time.sleep) -> BulkImport:
    """Bulk import over the parts' pool and Ingestor (the same validation and write path as the API)."""
    core = parts.core
    store = PostgresImportStore(core.pool)
    importer = BulkImporter(
        store, parts.ingestor, core.clock, batch_size=batch_size, audit=parts.audit.record, metrics=core.metrics
    )
    gateway = make_bulk_client(core.settings)
    exporter = BulkExporter(store, gateway, importer, core.clock, sleep) if gateway is not None else None
    return BulkImport(importer, exporter, gateway)
