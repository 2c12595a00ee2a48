"""The risk model's page and its JSON: the version in use, the local calibrations registered, and the calibration
plot and figures of the latest `refracture recalibrate` run. Figures only: no patient appears here."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response
from markupsafe import Markup
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from service.domain.model_monitoring import MIN_MONTH_PATIENTS, MISSING_RISE, OE_HIGH, OE_LOW, PSI_MAJOR, PSI_MODERATE
from service.domain.risk_model import model_version
from service.domain.risk_parameters import MODEL_NAME
from service.entrypoints.api.auth import CallersDep, require
from service.entrypoints.api.calibration_chart import CalibrationSeries, calibration_chart
from service.entrypoints.api.deps import CalibrationsDep, MonitorDep
from service.entrypoints.api.middleware import AuditNote, note_audit
from service.entrypoints.api.web import _signed_in, _who, templates
from service.security.principal import Permission
from service.usecases.model_monitoring import ModelMonitor
from service.usecases.ports.reads import CalibrationReads

__all__ = ["api_router", "page_router"]

api_router = APIRouter(prefix="/api", tags=["Model"], dependencies=[Depends(require(Permission.READ_MODEL))])
page_router = APIRouter(include_in_schema=False)


class RegisteredCalibration(BaseModel):
    """A local recalibration registered as a model version: new log-odds = intercept + slope x literature."""

    model_version: str
    parent_version: str
    method: str
    intercept: float
    slope: float
    fitted_at: datetime
    n: int
    events: int
    active: bool
    retired_at: datetime | None
    metrics: dict[str, Any]


class LatestEvaluation(BaseModel):
    """The latest recalibration run: the figures on held-out patients of the model then current and the candidate."""

    evaluated_at: datetime
    current_version: str
    candidate_version: str | None
    registered: bool
    reason: str
    metrics: dict[str, Any]


class ModelCalibration(BaseModel):
    """The model in use and its local calibrations."""

    model: str
    base_version: str
    model_version: str  # what new assessments carry: the base, or the active calibration's version
    active_calibration: str | None
    calibrations: list[RegisteredCalibration]
    latest_evaluation: LatestEvaluation | None


def _document(calibrations: CalibrationReads) -> ModelCalibration:
    base = model_version()
    active = calibrations.active_calibration(base)
    records = calibrations.calibrations()
    latest = calibrations.latest_evaluation()
    return ModelCalibration(
        model=MODEL_NAME,
        base_version=base,
        model_version=active.version if active else base,
        active_calibration=active.version if active else None,
        calibrations=[
            RegisteredCalibration(
                model_version=r.calibration.version,
                parent_version=r.parent_version,
                method=r.calibration.method,
                intercept=r.calibration.intercept,
                slope=r.calibration.slope,
                fitted_at=r.fitted_at,
                n=r.calibration.n,
                events=r.calibration.events,
                active=active is not None and r.calibration.version == active.version,
                retired_at=r.retired_at,
                metrics=r.metrics,
            )
            for r in records
        ],
        latest_evaluation=None
        if latest is None
        else LatestEvaluation(
            evaluated_at=latest.evaluated_at,
            current_version=latest.current_version,
            candidate_version=latest.candidate_version,
            registered=latest.registered,
            reason=latest.reason,
            metrics=latest.metrics,
        ),
    )


@api_router.get(
    "/model/calibration", operation_id="modelCalibration", summary="The risk model's version and local calibrations"
)
async def model_calibration(calibrations: CalibrationsDep) -> ModelCalibration:
    """The model version new assessments carry, every registered calibration, and the latest evaluation run."""
    return await run_in_threadpool(_document, calibrations)


class MonitoringThresholds(BaseModel):
    """The documented thresholds the warnings use (docs/model-monitoring.md)."""

    psi_moderate: float = PSI_MODERATE
    psi_major: float = PSI_MAJOR
    missing_rise: float = MISSING_RISE
    oe_low: float = OE_LOW
    oe_high: float = OE_HIGH
    min_month_patients: int = MIN_MONTH_PATIENTS


class ModelMonitoring(BaseModel):
    """The newest daily monitoring run: monthly input and prediction drift, calibration as outcomes accrue, and the
    warnings. ``computed_at`` is null until the first run."""

    computed_at: datetime | None
    model_version: str | None
    warning: bool
    thresholds: MonitoringThresholds
    summary: dict[str, Any]


def _monitoring(monitor: ModelMonitor) -> ModelMonitoring:
    record = monitor.latest()
    if record is None:
        return ModelMonitoring(
            computed_at=None, model_version=None, warning=False, thresholds=MonitoringThresholds(), summary={}
        )
    return ModelMonitoring(
        computed_at=record.computed_at,
        model_version=record.model_version,
        warning=record.warning,
        thresholds=MonitoringThresholds(),
        summary=record.summary,
    )


@api_router.get(
    "/model/monitoring",
    operation_id="modelMonitoring",
    summary="The risk model watched in production: input and prediction drift, calibration over time, warnings",
)
async def model_monitoring(request: Request, monitor: MonitorDep) -> ModelMonitoring:
    """The newest daily monitoring run (figures only: no patient appears)."""
    note_audit(request.state, AuditNote("read", "ModelMonitoring", detail="model monitoring"))
    return await run_in_threadpool(_monitoring, monitor)


def _series(evaluation: dict[str, Any] | None) -> list[CalibrationSeries]:
    if not evaluation:
        return []
    out = []
    held = evaluation.get("held_out") or {}
    for key, name in (("current", "model then in use"), ("candidate", "recalibrated")):
        figures = held.get(key)
        if figures:
            points = tuple((float(g["expected"]), float(g["observed"])) for g in figures.get("groups", []))
            out.append(CalibrationSeries(name, points))
    return out


@page_router.get("/worklist/model", response_class=HTMLResponse)
async def model_page(
    request: Request, callers: CallersDep, calibrations: CalibrationsDep, monitor: MonitorDep
) -> Response:
    """The model page: version, calibrations, and the latest evaluation's calibration plot and figures."""
    signed = await _signed_in(request, callers, Permission.READ_MODEL)
    if isinstance(signed, Response):
        return signed
    document = await run_in_threadpool(_document, calibrations)
    monitoring = await run_in_threadpool(_monitoring, monitor)
    latest = document.latest_evaluation
    held = (latest.metrics.get("held_out") or {}) if latest else {}
    # calibration_chart escapes every text it puts in the SVG.
    chart = Markup(calibration_chart(_series(latest.metrics if latest else None)))  # noqa: S704  # nosec B704
    return templates.TemplateResponse(
        request,
        "model.html",
        {
            **_who(request, signed),
            "doc": document,
            "latest": latest,
            "figures": [
                (name, held.get(key)) for key, name in (("current", "Then in use"), ("candidate", "Recalibrated"))
            ],
            "choice": latest.metrics.get("choice") if latest else None,
            "dataset": latest.metrics.get("dataset") if latest else None,
            "chart": chart,
            "monitoring": monitoring,
            "monitoring_warnings": monitoring.summary.get("warnings") or [],
            "pooled": (monitoring.summary.get("calibration") or {}).get("pooled"),
        },
    )
