"""What every entry point shares: the settings, the primary pool, the clock, the hospital's day, metrics, codes."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

from psycopg_pool import ConnectionPool

from service.adapters.metrics import PrometheusMetrics
from service.adapters.postgres.pool import make_pool
from service.fhir.terminology import Terminology, load_code_map
from service.platform.config import Settings, get_settings
from service.usecases.ports.clock import Clock

__all__ = ["Core", "build_core", "utc_now"]

log = logging.getLogger(__name__)


def utc_now() -> datetime:
    """The real clock; everything else receives time from here or from a test's clock."""
    return datetime.now(UTC)


@dataclass(slots=True)
class Core:
    """The infrastructure one process builds once, whichever entry point it runs."""

    settings: Settings
    pool: ConnectionPool  # the primary's connections: every write and every read-your-write
    clock: Clock
    zone: ZoneInfo  # the hospital's time zone: what "today" and "overdue" are counted in
    metrics: PrometheusMetrics
    terminology: Terminology

    def local_day(self, moment: datetime) -> date:
        """A moment's date in the hospital's time zone."""
        return moment.astimezone(self.zone).date()

    def today(self) -> date:
        """Today in the hospital's time zone."""
        return self.local_day(self.clock())

    def close(self) -> None:
        """Close the pool's connections."""
        self.pool.close()


def build_core(settings: Settings | None = None, *, clock: Clock = utc_now) -> Core:
    """The shared infrastructure from the settings (defaults to the environment's).

    Args:
        settings: defaults to the environment's.
        clock: the time source (tests pass a manual clock).
    """
    settings = settings or get_settings()
    code_map = load_code_map(settings.code_map_file) if settings.code_map_file else {}
    if code_map:
        log.info("loaded %d local code mappings", len(code_map))
    return Core(
        settings=settings,
        pool=make_pool(settings),
        clock=clock,
        zone=ZoneInfo(settings.timezone),
        metrics=PrometheusMetrics(),
        terminology=Terminology(code_map),
    )
