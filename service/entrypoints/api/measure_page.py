"""The FLS lead's page: each quality measure month by month (trend and target lines), per site, with the counts,
links to the patients behind them (the audited drill-down) and a CSV export (docs/measures.md).

The page shows the MeasureReports kept by `refracture measures` (monthly) and `$evaluate-measure`: counts only.
"""

from __future__ import annotations

import csv
import io
from datetime import date
from typing import Any, Final
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from markupsafe import Markup
from starlette.concurrency import run_in_threadpool

from service.domain.fls_measures import MEASURES, MeasureId, Period, months
from service.entrypoints.api.auth import Callers, CallersDep
from service.entrypoints.api.deps import MeasuresDep, SettingsDep, TodayDep
from service.entrypoints.api.measure_chart import trend_chart
from service.entrypoints.api.measure_routes import site_for
from service.entrypoints.api.middleware import AuditNote, note_audit
from service.entrypoints.api.scoping import Scoping, ScopingDep
from service.entrypoints.api.web import _refused, _signed_in, _who, templates
from service.fhir.jsonio import parse
from service.platform.config import Settings
from service.platform.errors import RefractureError
from service.security.principal import Permission, Principal
from service.usecases.measures import Measures

__all__ = ["page_router"]

page_router = APIRouter(include_in_schema=False)

# IOF Capture the Fracture's bands for its patient-level KPIs: below 50 %, 50-80 %, above 80 % (Javaid 2020).
_TARGETS: Final = {
    MeasureId.DXA_12W: (0.5, 0.8),
    MeasureId.TREATMENT_16W: (0.5, 0.8),
    MeasureId.ADHERENCE_52W: (0.5, 0.8),
}
_CODES: Final = ("initial-population", "denominator", "denominator-exclusion", "numerator", "measure-population")


def _counts(report: dict[str, Any]) -> dict[str, int]:
    return {p["code"]["coding"][0]["code"]: p["count"] for p in report["group"][0]["population"]}


def _score(report: dict[str, Any]) -> float | None:
    score = report["group"][0].get("measureScore")
    return float(score["value"]) if score else None


def _year(request: Request, today: date) -> int:
    raw = request.query_params.get("year", "")
    return int(raw) if raw.isdigit() and 2000 <= int(raw) <= 2100 else today.year


def _monthly(
    measures: Measures, year: int, site: str | None, sites: list[str] | None
) -> tuple[dict[str, dict[str, Any]], set[str]]:
    """The kept monthly reports of the year for the site (None: every site together), by measure and month; and the
    sites that have reports (the page's choices)."""
    bodies = measures.store.search_reports(None, date(year, 1, 1), date(year, 12, 31), None, sites, 20_000)
    found: dict[str, dict[str, Any]] = {}
    seen: set[str] = set()
    for body in bodies:
        report = parse(body.encode())
        start, end = report["period"]["start"], report["period"]["end"]
        if start[:7] != end[:7] or not start.endswith("-01"):
            continue  # not a month's report
        reporter = str(report.get("reporter", {}).get("display", "")).removeprefix("site ") or None
        if reporter:
            seen.add(reporter)
        if reporter != site:
            continue
        found.setdefault(report["measure"].rsplit("/", 1)[-1], {})[start[:7]] = report
    return found, seen


async def _page_site(
    request: Request, scoping: Scoping, measures: Measures, principal: Principal
) -> str | Response | None:
    try:
        return await site_for(scoping, measures, principal, request.query_params.get("site") or None)
    except RefractureError as exc:
        return _refused(
            request, 403 if "not one of yours" in str(exc) else 400, str(exc), "/worklist/measures", "Not available"
        )


async def _selection(
    request: Request, settings: Settings, measures: Measures, callers: Callers, scoping: Scoping, today: date
) -> tuple[Principal, str | None, int, list[str] | None] | Response:
    """Who asks, for which site and year, among which sites; or the page that refuses (sign-in, role, site)."""
    signed = await _signed_in(request, callers, Permission.READ_MEASURES)
    if isinstance(signed, Response):
        return signed
    site = await _page_site(request, scoping, measures, signed)
    if isinstance(site, Response):
        return site
    limited = signed.sites is not None or settings.auth_sites_required
    sites = sorted(measures.sites_of(signed.sites or ())) if limited else None
    return signed, site, _year(request, today), sites


@page_router.get("/worklist/measures", response_class=HTMLResponse)
async def measures_page(
    request: Request,
    settings: SettingsDep,
    measures: MeasuresDep,
    callers: CallersDep,
    scoping: ScopingDep,
    today: TodayDep,
) -> Response:
    """Each measure month by month for a year and a site (or every site): chart, counts, drill-down links."""
    chosen = await _selection(request, settings, measures, callers, scoping, today)
    if isinstance(chosen, Response):
        return chosen
    signed, site, year, sites = chosen
    note_audit(request.state, AuditNote("read", "MeasureReport", detail=f"measures page {year}"))
    found, seen = await run_in_threadpool(_monthly, measures, year, site, sites)
    labels = [m.start.strftime("%b") for m in months(Period(date(year, 1, 1), date(year, 12, 31)))]
    keys = [f"{year}-{n:02d}" for n in range(1, 13)]
    sections = []
    for measure, definition in MEASURES.items():
        by_month = found.get(measure.value, {})
        percent = definition.scoring == "proportion"
        values = [
            (_score(r) if definition.scoring != "cohort" else float(_counts(r)["initial-population"]))
            if (r := by_month.get(k))
            else None
            for k in keys
        ]
        rows = []
        for key, label in zip(keys, labels, strict=True):
            report = by_month.get(key)
            if report is None:
                continue
            end = report["period"]["end"]
            query = {"periodStart": f"{key}-01", "periodEnd": end, **({"site": site} if site else {})}
            counts = _counts(report)
            rows.append(
                {
                    "month": label,
                    "status": report["status"],
                    "counts": [
                        (
                            code,
                            counts[code],
                            f"/api/measures/{measure.value}/patients?" + urlencode({**query, "population": code}),
                        )
                        for code in _CODES
                        if code in counts
                    ],
                    "score": _score(report),
                }
            )
        chart = trend_chart(
            definition.title, list(zip(labels, values, strict=True)), percent, _TARGETS.get(measure, ())
        )
        sections.append(
            {
                "id": measure.value,
                "definition": definition,
                "chart": Markup(chart),  # noqa: S704 - trend_chart escapes every text it puts in the SVG  # nosec B704
                "rows": rows,
                "percent": percent,
                "unit": definition.unit,
            }
        )
    choices = sites if sites is not None else sorted(seen | set(settings.sites))
    return templates.TemplateResponse(
        request,
        "measures.html",
        {
            **_who(request, signed),
            "year": year,
            "site": site,
            "choices": choices,
            "everyone": sites is None,
            "sections": sections,
            "csv": "/worklist/measures.csv?" + urlencode({"year": year, **({"site": site} if site else {})}),
        },
    )


@page_router.get("/worklist/measures.csv")
async def measures_csv(
    request: Request,
    settings: SettingsDep,
    measures: MeasuresDep,
    callers: CallersDep,
    scoping: ScopingDep,
    today: TodayDep,
) -> Response:
    """The page's reports as CSV: one row per measure and month (counts, score, status)."""
    chosen = await _selection(request, settings, measures, callers, scoping, today)
    if isinstance(chosen, Response):
        return chosen
    _, site, year, sites = chosen
    note_audit(request.state, AuditNote("export", "MeasureReport", detail=f"measures.csv {year}"))
    found, _ = await run_in_threadpool(_monthly, measures, year, site, sites)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["measure", "period_start", "period_end", "site", "status", *_CODES, "score"])
    for measure in MEASURES:
        for _, report in sorted(found.get(measure.value, {}).items()):
            counts = _counts(report)
            score = _score(report)
            writer.writerow(
                [
                    measure.value,
                    report["period"]["start"],
                    report["period"]["end"],
                    site or "all",
                    report["status"],
                    *(counts.get(code, "") for code in _CODES),
                    "" if score is None else score,
                ]
            )
    headers = {"Content-Disposition": f'attachment; filename="measures-{year}.csv"'}
    return Response(out.getvalue(), media_type="text/csv; charset=utf-8", headers=headers)
