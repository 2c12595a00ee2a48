"""Recalibrate the risk model on the hospital's own outcomes, and register the result only when it is better.

The development dataset is every patient whose 2-year window after the first augmentation has closed
(domain/outcomes.py). Patients are split, stratified by outcome and seeded, into a part to fit on and a part held
out. On the fit part, closed testing chooses between keeping the current model, updating its intercept, and
refitting intercept and slope (domain/calibration.py). On the held-out part the current model and the candidate
are compared; the candidate is registered as a new model version only when its held-out log-loss is lower beyond
chance: the one-sided 95 % lower bound of the paired per-patient log-loss gain is above zero. Once validated so,
the chosen update is refitted on all patients and that fit is registered. A new registration
changes the model version of new assessments, so `refracture rescore` then re-assesses everyone.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from service.domain.calibration import (
    Calibration,
    Evaluation,
    UpdateChoice,
    choose_update,
    evaluate,
    expit,
    paired_log_loss_gain,
    refit,
)
from service.domain.outcomes import HORIZON_DAYS, DevelopmentCase, development_case, split_held_out
from service.domain.risk_model import model_version
from service.domain.risk_parameters import MODEL_NAME
from service.usecases.ports.calibration import CalibrationRecord, CalibrationStore, EvaluationRecord
from service.usecases.ports.clock import Clock

__all__ = ["RecalibrationReport", "Recalibrator", "calibration_version", "report_lines"]

log = logging.getLogger(__name__)


@dataclass(slots=True)
class RecalibrationReport:
    """What one run found and did."""

    current_version: str
    cases: int = 0
    events: int = 0
    excluded: dict[str, int] = field(default_factory=dict)
    n_fit: int = 0
    events_fit: int = 0
    choice: UpdateChoice | None = None
    current: Evaluation | None = None  # on the held-out patients
    candidate: Evaluation | None = None
    candidate_calibration: Calibration | None = None
    gain: float = 0.0  # held-out log-loss, current minus candidate, per patient
    gain_low: float = 0.0  # its one-sided 95 % lower bound
    registered: bool = False
    dry_run: bool = False
    reason: str = ""

    def metrics(self, seed: int, held_out_share: float) -> dict[str, Any]:
        """The figures kept with a calibration and an evaluation (JSON)."""
        choice = self.choice
        return {
            "dataset": {"cases": self.cases, "events": self.events, "excluded": self.excluded},
            "split": {"seed": seed, "held_out_share": held_out_share, "fit": self.n_fit, "fit_events": self.events_fit},
            "choice": None
            if choice is None
            else {
                "method": choice.method,
                "intercept": choice.intercept,
                "slope": choice.slope,
                "reason": choice.reason,
                "p_overall": choice.p_overall,
                "p_slope": choice.p_slope,
                "p_intercept": choice.p_intercept,
            },
            "held_out": {
                "current": self.current.as_dict() if self.current else None,
                "candidate": self.candidate.as_dict() if self.candidate else None,
                "log_loss_gain": self.gain,
                "log_loss_gain_low": self.gain_low,
            },
        }


def calibration_version(base_version: str, intercept: float, slope: float) -> str:
    """A calibration's model version: the base and a digest of its numbers (the same fit gives the same version)."""
    digest = hashlib.sha256(f"{base_version}|{intercept:.6f}|{slope:.6f}".encode()).hexdigest()[:8]
    return f"{base_version}.cal.{digest}"


class Recalibrator:
    """Builds the development dataset, fits, compares on held-out patients, and registers a better calibration."""

    def __init__(
        self, store: CalibrationStore, clock: Clock, local_day: Callable[[datetime], date], batch_size: int = 1000
    ) -> None:
        self._store = store
        self._clock = clock
        self._local_day = local_day
        self._batch_size = batch_size

    def dataset(self, cutoff: date) -> tuple[list[DevelopmentCase], Counter[str]]:
        """Every patient's development case, and how many were left out for which reason."""
        return self._cases(cutoff, self._store.patients_with_augmentation)

    def closed_cases(self, cutoff: date) -> list[DevelopmentCase]:
        """The development cases only (what model monitoring's calibration reads): the facts of patients whose index
        is too recent for a closed 2-year window are not read at all (most of a live population's; bench/monitoring).
        """
        operated_by = cutoff - timedelta(days=HORIZON_DAYS)
        return self._cases(cutoff, lambda after, limit: self._store.patients_operated_by(operated_by, after, limit))[0]

    def _cases(
        self, cutoff: date, patients: Callable[[str, int], list[str]]
    ) -> tuple[list[DevelopmentCase], Counter[str]]:
        cases: list[DevelopmentCase] = []
        excluded: Counter[str] = Counter()
        after = ""
        while True:
            batch = patients(after, self._batch_size)
            if not batch:
                return cases, excluded
            with self._store.fact_reader() as reader:
                facts = reader.facts_of(batch)
                coverage = reader.coverage_of(batch)
            for patient_id in batch:
                case = development_case(patient_id, facts.get(patient_id, []), coverage.get(patient_id, set()), cutoff)
                if isinstance(case, str):
                    excluded[case] += 1
                else:
                    cases.append(case)
            after = batch[-1]

    def run(self, *, seed: int = 1, held_out_share: float = 0.3, dry_run: bool = False) -> RecalibrationReport:
        """Fit, compare and (unless ``dry_run``) record the evaluation and register a better calibration.

        Args:
            seed: the split's seed.
            held_out_share: the share of patients (of events and of non-events each) held out.
            dry_run: report only; store nothing.
        """
        if not 0.0 < held_out_share < 1.0:
            raise ValueError("the held-out share must lie between 0 and 1")
        now = self._clock()
        base = model_version()
        current = self._store.active_calibration(base)
        report = RecalibrationReport(
            current_version=f"{MODEL_NAME}/{current.version if current else base}", dry_run=dry_run
        )
        cases, excluded = self.dataset(self._local_day(now))
        report.cases, report.events = len(cases), sum(c.event for c in cases)
        report.excluded = dict(sorted(excluded.items()))
        fit, held = split_held_out(cases, held_out_share, seed)
        y_fit = [int(cases[i].event) for i in fit]
        y_held = [int(cases[i].event) for i in held]
        report.n_fit, report.events_fit = len(fit), sum(y_fit)

        def current_lp(case: DevelopmentCase) -> float:
            return current.apply(case.log_odds) if current else case.log_odds

        if min(sum(y_held), len(y_held) - sum(y_held), sum(y_fit), len(y_fit) - sum(y_fit)) == 0:
            report.reason = "not enough patients with and without a new fracture to fit and to compare"
            return self._finish(report, None, now, seed, held_out_share)
        choice = choose_update(y_fit, [current_lp(cases[i]) for i in fit])
        report.choice = choice
        current_p = [expit(current_lp(cases[i])) for i in held]
        report.current = evaluate(y_held, current_p)
        if choice.method == "none":
            report.reason = f"closed testing keeps the current model ({choice.reason})"
            return self._finish(report, None, now, seed, held_out_share)
        # The candidate relative to the literature model: a' + b' (a + b lp) = (a' + b' a) + (b' b) lp.
        intercept = choice.intercept + choice.slope * (current.intercept if current else 0.0)
        slope = choice.slope * (current.slope if current else 1.0)
        candidate = Calibration(
            calibration_version(base, intercept, slope), base, choice.method, intercept, slope, len(fit), sum(y_fit)
        )
        report.candidate_calibration = candidate
        candidate_p = [expit(candidate.apply(cases[i].log_odds)) for i in held]
        report.candidate = evaluate(y_held, candidate_p)
        report.gain, report.gain_low = paired_log_loss_gain(y_held, current_p, candidate_p)
        if current is not None and candidate.version == current.version:
            report.reason = "the fit is the current calibration"
        elif report.gain_low > 0:
            report.registered = not dry_run
            # Validated on the held-out patients: the update method is kept and refitted on every patient, so the
            # registered calibration uses all the data (Steyerberg, Clinical Prediction Models, ch. 20).
            y_all = [int(c.event) for c in cases]
            a_all, b_all = refit(choice.method, y_all, [current_lp(c) for c in cases])
            intercept = a_all + b_all * (current.intercept if current else 0.0)
            slope = b_all * (current.slope if current else 1.0)
            candidate = Calibration(
                calibration_version(base, intercept, slope),
                base,
                choice.method,
                intercept,
                slope,
                len(cases),
                sum(y_all),
            )
            report.candidate_calibration = candidate
            report.reason = (
                f"held-out log-loss {report.current.log_loss:.4f} → {report.candidate.log_loss:.4f} "
                f"(gain {report.gain:.4f}, lower bound {report.gain_low:.4f} > 0); {choice.method} refitted on all "
                f"{len(cases)} patients"
            )
        else:
            report.reason = (
                f"not better on held-out patients beyond chance (log-loss gain {report.gain:.4f}, "
                f"lower bound {report.gain_low:.4f} ≤ 0)"
            )
        return self._finish(report, candidate, now, seed, held_out_share)

    def _finish(
        self,
        report: RecalibrationReport,
        candidate: Calibration | None,
        now: datetime,
        seed: int,
        held_out_share: float,
    ) -> RecalibrationReport:
        if report.dry_run:
            return report
        metrics = report.metrics(seed, held_out_share)
        registration = None
        if report.registered and candidate is not None:
            parent = report.current_version.split("/", 1)[1]
            registration = CalibrationRecord(candidate, parent, now, metrics)
        evaluation = EvaluationRecord(
            now,
            report.current_version,
            f"{MODEL_NAME}/{candidate.version}" if candidate else None,
            report.registered,
            report.reason,
            metrics,
        )
        self._store.record_run(evaluation, registration)
        if registration is not None:
            log.info("registered model calibration %s", registration.calibration.version)
        return report


def _evaluation_line(name: str, e: Evaluation) -> str:
    return (
        f"  {name:<13} C {e.c_statistic:.3f} ({e.c_low:.3f}-{e.c_high:.3f})  slope {e.calibration_slope:.3f} "
        f"({e.slope_low:.2f}-{e.slope_high:.2f})  in-the-large {e.calibration_in_the_large:+.3f}  "
        f"O/E {e.observed / e.expected:.2f}  Brier {e.brier:.4f}  log-loss {e.log_loss:.4f}"
    )


def report_lines(report: RecalibrationReport) -> list[str]:
    """The run in plain lines, for the command line (figures only: no patient is named)."""
    excluded = ", ".join(f"{n} {why}" for why, n in report.excluded.items()) or "none"
    lines = [
        f"current model: {report.current_version}",
        f"development dataset: {report.cases} patients, {report.events} with a new vertebral fracture within 2 "
        f"years; left out: {excluded}",
        f"fitted on {report.n_fit} patients ({report.events_fit} events); held out {report.cases - report.n_fit}",
    ]
    if report.choice is not None:
        c = report.choice
        lines.append(
            f"closed testing: {c.method} ({c.reason}; p overall {c.p_overall:.3g}, slope {c.p_slope:.3g}, "
            f"intercept {c.p_intercept:.3g})"
        )
    if report.candidate_calibration is not None:
        cal = report.candidate_calibration
        lines.append(
            f"candidate {cal.version}: log-odds = {cal.intercept:+.4f} + {cal.slope:.4f} x the literature model's"
        )
    if report.current is not None:
        lines.append("held-out patients:")
        lines.append(_evaluation_line("current", report.current))
    if report.candidate is not None:
        lines.append(_evaluation_line("recalibrated", report.candidate))
    verdict = "registered" if report.registered else "dry run: nothing stored" if report.dry_run else "not registered"
    lines.append(f"{verdict}: {report.reason}")
    if report.registered:
        lines.append("run `refracture rescore` to re-assess every patient with the new model version")
    return lines
