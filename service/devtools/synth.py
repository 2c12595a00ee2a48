"""A synthetic cohort of patients after vertebral augmentation, as FHIR R4 transaction Bundles (no real people).

Deterministic: the same seed and the same ``today`` give the same Bundles, byte for byte once serialised. Each
patient has demographics and an MRN, the index osteoporotic vertebral compression fracture (one level, sometimes
two) and its vertebroplasty (PVP) or kyphoplasty (PKP), and — each with its own likelihood, because real records
are incomplete — DXA T-scores (lumbar spine, hip), CT Hounsfield units of the treated and adjacent levels before
the operation and of the cemented level after it, the compression ratio, Cobb angle, kyphosis correction, cement
volume ratio, leakage and endplate contact, eGFR and HbA1c, weight and height, comorbidities (type 2 diabetes, CKD,
sarcopenia, earlier fractures, long-term glucocorticoids, falls) and a medication history drawn from the treatment
patterns that docs/sources describes: denosumab every 6 months on time, late, overdue or stopped without a
follow-on drug, denosumab followed by zoledronic acid, yearly zoledronic acid, alendronate with refills that may
stop, teriparatide, oncology denosumab (out of scope), or nothing at all (the post-fracture treatment gap).

service/entrypoints/demo.py, bench/ and `refracture synth` all draw on this one generator.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any, Final

from service.devtools.synth_fhir import MRN_SYSTEM, condition, entry, level_site, medication_use, observation, quantity
from service.fhir import systems as S

__all__ = ["MRN_SYSTEM", "TREATMENT_PATTERNS", "cohort", "iter_cohort", "patient_bundle"]

_FAMILY: Final = ("Testperson", "Synthetic", "Example", "Sample", "Fictional", "Placeholder")
_GIVEN_F: Final = ("Ada", "Berit", "Clara", "Dora", "Edda", "Frida", "Greta", "Hanna", "Ines", "Jola")
_GIVEN_M: Final = ("Arne", "Bruno", "Carl", "Dirk", "Emil", "Fritz", "Gustav", "Hugo", "Ivo", "Jens")
# OVCFs cluster at the thoracolumbar junction (T11-L2); the tuple's repeats weight the draw towards it.
_LEVELS: Final = ("T6", "T7", "T8", "T9", "T10", "T11", "T12", "L1", "L2", "L3", "L4", "L5")
_LEVEL_WEIGHTS: Final = (1, 1, 2, 2, 3, 6, 9, 9, 6, 3, 2, 1)

# Medication histories and their shares. Most patients are never treated after the fracture (the gap the alerts
# close); denosumab patients are often late or stop without a follow-on drug (docs/sources/alerts.md).
TREATMENT_PATTERNS: Final[tuple[tuple[str, float], ...]] = (
    ("untreated", 0.32),
    ("denosumab-on-time", 0.14),
    ("denosumab-late-resumed", 0.05),
    ("denosumab-overdue", 0.07),
    ("denosumab-stopped", 0.08),
    ("denosumab-follow-on", 0.05),
    ("zoledronic-acid", 0.11),
    ("alendronate", 0.12),
    ("teriparatide", 0.04),
    ("denosumab-oncology", 0.02),
)

Coding = dict[str, Any]
_DMAB_60: Final[tuple[tuple[Coding, str], ...]] = (
    ({"system": S.RXNORM, "code": "993452"}, "1 ML denosumab 60 MG/ML Prefilled Syringe"),
    # Biosimilars arrive with new product codes: ingredient (ATC) plus the dose is how refracture tells 60 mg.
    ({"system": S.ATC, "code": "M05BX04", "display": "denosumab"}, "denosumab-bbdz 60 MG/ML Prefilled Syringe"),
)
_DMAB_120: Final = ({"system": S.ATC, "code": "M05BX04", "display": "denosumab"}, "denosumab 120 MG/1.7 ML Injection")
_ZOL: Final = ({"system": S.RXNORM, "code": "705824"}, "zoledronic acid 5 MG/100 ML Injection")
_ALN: Final = ({"system": S.ATC, "code": "M05BA04", "display": "alendronic acid"}, "alendronic acid 70 MG Oral Tablet")
_TPTD: Final = ({"system": S.ATC, "code": "H05AA02", "display": "teriparatide"}, "teriparatide 20 MCG/DOSE Pen")
_PRED: Final = ({"system": S.ATC, "code": "H02AB07", "display": "prednisone"}, "prednisone 5 MG Oral Tablet")
_SGLT2: Final = ({"system": S.ATC, "code": "A10BK03", "display": "empagliflozin"}, "empagliflozin 10 MG Oral Tablet")


def _measure(code: str) -> Coding:
    return {"system": S.MEASURE, "code": code}


def _loinc(code: str, display: str) -> Coding:
    return {"system": S.LOINC, "code": code, "display": display}


class _Patient:
    """One synthetic patient's story, built resource by resource from one random stream."""

    def __init__(self, rng: random.Random, number: int, today: date, prefix: str) -> None:
        self.rng = rng
        self.today = today
        self.pid = f"{prefix}-{number:06d}"
        self.number = number
        self.resources: list[dict[str, Any]] = []
        self.pattern = rng.choices([p for p, _ in TREATMENT_PATTERNS], [w for _, w in TREATMENT_PATTERNS])[0]
        # Histories that need time to unfold (a course that ran late, then stopped) need an older operation.
        earliest = {"denosumab-late-resumed": 560, "denosumab-stopped": 420, "denosumab-follow-on": 480}
        self.surgery = today - timedelta(days=rng.randint(earliest.get(self.pattern, 20), 1100))
        self.fracture = self.surgery - timedelta(days=rng.randint(3, 70))
        index = rng.choices(range(len(_LEVELS)), _LEVEL_WEIGHTS)[0]
        levels = [_LEVELS[index]]
        if rng.random() < 0.18 and index + 1 < len(_LEVELS):
            levels.append(_LEVELS[index + 1])  # two adjacent levels fractured and treated together
        self.levels = tuple(levels)
        self.adjacent = _LEVELS[min(index + len(levels), len(_LEVELS) - 1)]
        self.pkp = rng.random() < 0.55
        self.female = rng.random() < 0.78
        self.diabetic = False

    def add(self, resource: dict[str, Any]) -> None:
        self.resources.append(resource)

    def days(self, low: int, high: int) -> timedelta:
        return timedelta(days=self.rng.randint(low, high))

    def bundle(self) -> dict[str, Any]:
        self._demographics()
        self._index_event()
        self._imaging()
        self._comorbidities()
        self._medications()
        return {"resourceType": "Bundle", "type": "transaction", "entry": [entry(r) for r in self.resources]}

    # --- who ------------------------------------------------------------------------------------------
    def _demographics(self) -> None:
        rng = self.rng
        age = max(50, min(97, round(rng.gauss(74, 9))))
        birth = self.today - timedelta(days=age * 365 + rng.randint(0, 364))
        self.add(
            {
                "resourceType": "Patient",
                "id": self.pid,
                "identifier": [
                    {
                        "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]},
                        "system": MRN_SYSTEM,
                        "value": f"D{self.number:06d}",
                    }
                ],
                "active": True,
                "name": [
                    {
                        "use": "official",
                        "family": rng.choice(_FAMILY),
                        "given": [rng.choice(_GIVEN_F if self.female else _GIVEN_M)],
                    }
                ],
                "gender": "female" if self.female else "male",
                "birthDate": birth.isoformat(),
            }
        )

    # --- the fracture and its operation ---------------------------------------------------------------
    def _index_event(self) -> None:
        pid, lumbar = self.pid, self.levels[0].startswith("L")
        self.add(
            condition(
                pid,
                "ovcf",
                "M80.08XA",
                "Age-related osteoporosis with current pathological fracture, vertebra(e), initial encounter",
                self.fracture,
                levels=self.levels,
            )
        )
        code = ("22514" if lumbar else "22513") if self.pkp else ("22511" if lumbar else "22510")
        self.add(
            {
                "resourceType": "Procedure",
                "id": f"{pid}-augmentation",
                "status": "completed",
                "category": {"coding": [{"system": S.SNOMED, "code": "387713003", "display": "Surgical procedure"}]},
                "code": {
                    "coding": [{"system": S.CPT, "code": code}],
                    "text": "Kyphoplasty" if self.pkp else "Vertebroplasty",
                },
                "subject": {"reference": f"Patient/{pid}"},
                "performedDateTime": self.surgery.isoformat(),
                "bodySite": [level_site(*self.levels)],
                "reasonReference": [{"reference": f"Condition/{pid}-ovcf"}],
            }
        )

    # --- DXA, CT, radiographs, operation notes ---------------------------------------------------------
    def _imaging(self) -> None:
        rng, pid = self.rng, self.pid
        treated = self.levels[0]
        preop = self.surgery - self.days(1, 5)
        # Bone density and attenuation fall with each other; one latent "bone quality" ties them together.
        quality = rng.gauss(0.0, 1.0)
        if rng.random() < 0.65:
            dxa_day = min(self.today, self.fracture + self.days(-500, 60))
            lumbar_t = -2.6 + 0.8 * quality + rng.gauss(0.0, 0.4)
            self.add(
                observation(
                    pid,
                    f"{pid}-dxa-ls",
                    _loinc("38267-1", "DXA Lumbar spine [T-score] Bone density"),
                    dxa_day,
                    "imaging",
                    valueQuantity=quantity(lumbar_t, "{T-score}", 1),
                )
            )
            if rng.random() < 0.7:
                self.add(
                    observation(
                        pid,
                        f"{pid}-dxa-hip",
                        _loinc("38264-8", "DXA Hip [T-score] Bone density"),
                        dxa_day,
                        "imaging",
                        valueQuantity=quantity(lumbar_t + rng.gauss(0.3, 0.5), "{T-score}", 1),
                    )
                )
        if rng.random() < 0.6:
            # Trabecular attenuation on the pre-operative CT: osteoporotic vertebrae are mostly under 100 HU.
            treated_hu = max(15.0, 72.0 + 22.0 * quality + rng.gauss(0.0, 10.0))
            adjacent_hu = max(20.0, treated_hu + rng.gauss(12.0, 10.0))
            for oid, level, value in (("hu-treated", treated, treated_hu), ("hu-adjacent", self.adjacent, adjacent_hu)):
                self.add(
                    observation(
                        pid,
                        f"{pid}-{oid}",
                        _measure("vertebral-hu"),
                        preop,
                        "imaging",
                        valueQuantity=quantity(value, "[hnsf'U]", 0),
                        bodySite=level_site(level),
                    )
                )
            if rng.random() < 0.4:
                # Post-operative CT: the cemented body reads ~700-1500 HU, which makes the HU gradient to the
                # adjacent level that Wang 2023 [12] relates to adjacent re-fracture.
                self.add(
                    observation(
                        pid,
                        f"{pid}-hu-cemented",
                        _measure("vertebral-hu"),
                        self.surgery + self.days(1, 4),
                        "imaging",
                        valueQuantity=quantity(rng.uniform(700.0, 1500.0), "[hnsf'U]", 0),
                        bodySite=level_site(treated),
                    )
                )
        if rng.random() < 0.7:
            self.add(
                observation(
                    pid,
                    f"{pid}-compression",
                    _measure("vertebral-compression-ratio"),
                    preop,
                    "imaging",
                    valueQuantity=quantity(min(80.0, max(8.0, rng.gauss(33.0, 12.0))), "%", 1),
                    bodySite=level_site(treated),
                )
            )
        if rng.random() < 0.45:
            cobb = _measure("cobb-angle") if rng.random() < 0.5 else {"system": S.SNOMED, "code": "285285000"}
            self.add(
                observation(
                    pid,
                    f"{pid}-cobb",
                    cobb,
                    preop,
                    "imaging",
                    valueQuantity=quantity(abs(rng.gauss(7.0, 6.0)), "deg", 1),
                )
            )
        self._operation_measures()

    def _operation_measures(self) -> None:
        rng, pid = self.rng, self.pid
        site = level_site(*self.levels)
        part_of = [{"reference": f"Procedure/{pid}-augmentation"}]
        if rng.random() < 0.5:
            # Kyphoplasty's balloon restores more height than vertebroplasty.
            correction = rng.gauss(8.0, 3.5) if self.pkp else rng.gauss(3.5, 2.5)
            self.add(
                observation(
                    pid,
                    f"{pid}-kyphosis-correction",
                    _measure("kyphosis-correction"),
                    self.surgery + self.days(0, 3),
                    "imaging",
                    valueQuantity=quantity(max(0.0, correction), "deg", 1),
                    bodySite=site,
                    partOf=part_of,
                )
            )
        if rng.random() < 0.65:
            self.add(
                observation(
                    pid,
                    f"{pid}-cement-ratio",
                    _measure("cement-volume-ratio"),
                    self.surgery,
                    "imaging",
                    valueQuantity=quantity(rng.uniform(6.0, 30.0), "%", 1),
                    bodySite=site,
                    partOf=part_of,
                )
            )
            roll = rng.random()
            # Leakage is common on CT (a third to a half of levels); disc leakage is the kind tied to re-fracture.
            leakage: dict[str, Any] = (
                {"valueBoolean": False}
                if roll < 0.6
                else {"valueCodeableConcept": {"text": "intradiscal cement leakage"}}
                if roll < 0.75
                else {"valueBoolean": True}
            )
            self.add(
                observation(
                    pid,
                    f"{pid}-cement-leakage",
                    _measure("cement-leakage"),
                    self.surgery,
                    "imaging",
                    bodySite=site,
                    partOf=part_of,
                    **leakage,
                )
            )
            if rng.random() < 0.6:
                self.add(
                    observation(
                        pid,
                        f"{pid}-cement-endplates",
                        _measure("cement-endplate-contact"),
                        self.surgery,
                        "imaging",
                        valueInteger=rng.choices((0, 1, 2), (2, 4, 4))[0],
                        bodySite=site,
                        partOf=part_of,
                    )
                )

    # --- comorbidities and laboratory -----------------------------------------------------------------
    def _comorbidities(self) -> None:
        rng, pid = self.rng, self.pid
        before = self.fracture
        if rng.random() < 0.22:
            self.diabetic = True
            self.add(
                condition(
                    pid, "t2d", "E11.9", "Type 2 diabetes mellitus without complications", before - self.days(400, 6000)
                )
            )
            if rng.random() < 0.7:
                self.add(
                    observation(
                        pid,
                        f"{pid}-hba1c",
                        _loinc("4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood"),
                        self.surgery - self.days(1, 60),
                        "laboratory",
                        valueQuantity=quantity(rng.uniform(6.0, 9.5), "%", 1),
                    )
                )
        if rng.random() < 0.55:
            egfr = min(110.0, max(8.0, rng.gauss(68.0, 20.0)))
            self.add(
                observation(
                    pid,
                    f"{pid}-egfr",
                    _loinc(
                        "98979-8", "Glomerular filtration rate/1.73 sq M.predicted [Volume Rate/Area] by CKD-EPI 2021"
                    ),
                    self.surgery - self.days(1, 30),
                    "laboratory",
                    valueQuantity=quantity(egfr, "mL/min/{1.73_m2}", 0),
                )
            )
            if egfr < 60 and rng.random() < 0.6:
                stage, text = (
                    ("N18.4", "Chronic kidney disease, stage 4 (severe)")
                    if egfr < 30
                    else ("N18.30", "Chronic kidney disease, stage 3 unspecified")
                )
                self.add(condition(pid, "ckd", stage, text, before - self.days(200, 3000)))
        elif rng.random() < 0.06:
            self.add(
                condition(
                    pid, "ckd", "N18.30", "Chronic kidney disease, stage 3 unspecified", before - self.days(200, 3000)
                )
            )
        if rng.random() < 0.08:
            self.add(condition(pid, "sarcopenia", "M62.84", "Sarcopenia", before - self.days(30, 1500)))
        elif rng.random() < 0.12:
            self.add(
                observation(
                    pid,
                    f"{pid}-sarcopenia-assessment",
                    _measure("sarcopenia"),
                    self.surgery - self.days(1, 20),
                    "exam",
                    valueBoolean=rng.random() < 0.45,
                )
            )
        if rng.random() < 0.15:
            self.add(
                condition(
                    pid,
                    "prior-fracture",
                    "Z87.310",
                    "Personal history of (healed) osteoporosis fracture",
                    before - self.days(400, 3000),
                    status="resolved",
                )
            )
        if rng.random() < 0.08:
            # An earlier vertebral fracture at another level, years before this one.
            other = _LEVELS[(_LEVELS.index(self.levels[0]) + 3) % len(_LEVELS)]
            self.add(
                condition(
                    pid,
                    "prior-ovcf",
                    "M80.08XA",
                    "Age-related osteoporosis with current pathological fracture, vertebra(e), initial encounter",
                    before - self.days(500, 3000),
                    status="resolved",
                    levels=(other,),
                )
            )
        if rng.random() < 0.05:
            self.add(
                condition(
                    pid,
                    "hip-fracture",
                    "M80.051A",
                    "Age-related osteoporosis with current pathological fracture, right femur, initial encounter",
                    before - self.days(400, 3000),
                    status="resolved",
                )
            )
        if rng.random() < 0.12:
            self.add(condition(pid, "falls", "Z91.81", "History of falling", before - self.days(30, 1000)))
        if rng.random() < 0.5:
            self.add(
                observation(
                    pid,
                    f"{pid}-weight",
                    _loinc("29463-7", "Body weight"),
                    self.surgery - self.days(0, 3),
                    "vital-signs",
                    valueQuantity=quantity(rng.gauss(68.0 if self.female else 80.0, 11.0), "kg", 1),
                )
            )
        steroids = rng.random()
        if steroids < 0.04:
            self.add(
                condition(
                    pid,
                    "steroids",
                    "Z79.52",
                    "Long term (current) use of systemic steroids",
                    before - self.days(200, 2000),
                )
            )
        elif steroids < 0.10:
            self.add(
                medication_use(
                    "MedicationStatement",
                    pid,
                    f"{pid}-prednisone",
                    max(self.today - self.days(30, 900), before - self.days(30, 900)),
                    *_PRED,
                    dose_mg=5.0,
                    every=(1, "d"),
                )
            )
        if self.diabetic and rng.random() < 0.3:
            self.add(
                medication_use(
                    "MedicationRequest",
                    pid,
                    f"{pid}-sglt2",
                    self.surgery - self.days(20, 400),
                    *_SGLT2,
                    dose_mg=10.0,
                    every=(1, "d"),
                )
            )

    # --- anti-osteoporosis treatment ------------------------------------------------------------------
    def _medications(self) -> None:
        pattern = self.pattern
        if pattern.startswith("denosumab-") and pattern != "denosumab-oncology":
            self._denosumab(pattern)
        elif pattern == "denosumab-oncology":
            # Monthly 120 mg for bone metastases: refracture must not take it for the osteoporosis product.
            day = self.surgery - self.days(30, 200)
            for n in range(12):
                if day >= self.today:
                    break
                self._dose("MedicationAdministration", f"dmab120-{n}", day, _DMAB_120, 120.0)
                day += self.days(26, 32)
        elif pattern == "zoledronic-acid":
            day = self.surgery + self.days(20, 150)
            year = 0
            while day < self.today and year < 3:
                self._dose("MedicationAdministration", f"zol-{year}", day, _ZOL, 5.0)
                day += self.days(350, 420)
                year += 1
        elif pattern == "alendronate":
            self._alendronate()
        elif pattern == "teriparatide":
            start = self.surgery + self.days(10, 90)
            if start < self.today:
                self.add(
                    medication_use(
                        "MedicationRequest", self.pid, f"{self.pid}-teriparatide", start, *_TPTD, every=(1, "d")
                    )
                )
                day, n = start, 0
                while day < self.today and n < 24:
                    self._dispense(f"teriparatide-{n}", day, _TPTD, 28)
                    day += self.days(27, 40)
                    n += 1

    def _dose(self, kind: str, suffix: str, day: date, drug: tuple[Coding, str], dose_mg: float) -> None:
        self.add(medication_use(kind, self.pid, f"{self.pid}-{suffix}", day, *drug, dose_mg=dose_mg))

    def _dispense(self, suffix: str, day: date, drug: tuple[Coding, str], days_supply: int) -> None:
        self.add(
            medication_use("MedicationDispense", self.pid, f"{self.pid}-{suffix}", day, *drug, days_supply=days_supply)
        )

    def _denosumab(self, pattern: str) -> None:
        rng = self.rng
        product = _DMAB_60[0] if rng.random() < 0.75 else _DMAB_60[1]
        # The last dose decides what the alerts see today (docs/sources/alerts.md: due at 152 days, overdue past 213,
        # stopped past 295 or when the record says so); the course is laid back from it at ~6-month intervals.
        last_ago = {
            "denosumab-on-time": (5, 200),
            "denosumab-late-resumed": (5, 150),
            "denosumab-overdue": (214, 294),
            "denosumab-stopped": (300, 380),
            "denosumab-follow-on": (300, 380),
        }[pattern]
        last = self.today - self.days(*last_ago)
        explicit_stop = pattern == "denosumab-stopped" and rng.random() < 0.4
        if explicit_stop:
            last = self.today - self.days(60, 200)  # stopped on purpose, recorded as such
        first_allowed = self.surgery + self.days(10, 60)
        if rng.random() < 0.2:
            first_allowed = self.fracture - self.days(200, 1200)  # already on denosumab before the fracture
        doses = [last]
        day = last
        stretched = pattern == "denosumab-late-resumed"
        while True:
            interval = rng.randint(176, 200)
            if stretched and len(doses) >= 1 and day - timedelta(days=240) >= first_allowed:
                interval, stretched = rng.randint(230, 290), False  # one dose given weeks late, then resumed
            day -= timedelta(days=interval)
            if day < first_allowed or len(doses) >= 8:
                break
            doses.append(day)
        doses.reverse()
        kind = "MedicationAdministration" if rng.random() < 0.8 else "MedicationDispense"
        self.add(
            medication_use(
                "MedicationRequest",
                self.pid,
                f"{self.pid}-dmab-order",
                doses[0] - self.days(1, 14),
                *product,
                status="stopped" if explicit_stop else "active",
                dose_mg=60.0,
                every=(6, "mo"),
            )
        )
        for n, dose_day in enumerate(doses):
            if kind == "MedicationAdministration":
                self._dose(kind, f"dmab-{n}", dose_day, product, 60.0)
            else:
                self._dispense(f"dmab-{n}", dose_day, product, 183)
        if explicit_stop:
            # The record says so: a statement that the injections were stopped, after the last one.
            self.add(
                medication_use(
                    "MedicationStatement",
                    self.pid,
                    f"{self.pid}-dmab-stopped",
                    min(self.today, last + self.days(14, 120)),
                    *product,
                    status="stopped",
                    dose_mg=60.0,
                    every=(6, "mo"),
                )
            )
        if pattern == "denosumab-follow-on":
            # Zoledronic acid about 6 months after the last injection (the follow-on that prevents the rebound).
            self._dose(
                "MedicationAdministration", "zol-follow-on", min(self.today, last + self.days(170, 260)), _ZOL, 5.0
            )

    def _alendronate(self) -> None:
        start = self.surgery + self.days(5, 120)
        if start >= self.today:
            return
        self.add(
            medication_use(
                "MedicationRequest", self.pid, f"{self.pid}-aln", start, *_ALN, dose_mg=70.0, every=(1, "wk")
            )
        )
        # 12 tablets cover 84 days; a third stop refilling within the first year (oral bisphosphonate adherence).
        refills = self.rng.randint(1, 4) if self.rng.random() < 0.35 else 40
        day, n = start, 0
        while day < self.today and n < refills:
            self._dispense(f"aln-{n}", day, _ALN, 84)
            day += self.days(80, 100)
            n += 1


def patient_bundle(rng: random.Random, number: int, today: date, prefix: str = "synth") -> dict[str, Any]:
    """One synthetic patient's transaction Bundle (PUT entries with EHR-style ids ``{prefix}-{number:06d}...``).

    Args:
        rng: the random stream; draws advance it, so patients drawn in order from one seed are reproducible.
        number: the patient's number (id and MRN).
        today: the day the record is read: nothing is dated after it.
        prefix: the ids' prefix, to keep cohorts apart in one database.
    """
    return _Patient(rng, number, today, prefix).bundle()


def iter_cohort(size: int, seed: int = 1, today: date | None = None, prefix: str = "synth") -> Iterator[dict[str, Any]]:
    """``size`` synthetic patients' Bundles one at a time (for cohorts too large to hold), as ``cohort`` gives them."""
    rng = random.Random(seed)  # noqa: S311 - synthetic data, not secrets  # nosec B311
    anchor = today or date.today()
    for number in range(1, size + 1):
        yield patient_bundle(rng, number, anchor, prefix)


def cohort(size: int, seed: int = 1, today: date | None = None, prefix: str = "synth") -> list[dict[str, Any]]:
    """``size`` synthetic patients' Bundles, the same for the same seed and date."""
    return list(iter_cohort(size, seed, today, prefix))
