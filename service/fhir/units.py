"""UCUM units to each measure's canonical unit (docs/sources/codes.md §5, checked with the LHC UCUM validator).

Each family lists the units it accepts and the factor to the canonical one. A few non-UCUM spellings that EHRs
send every day ("HU", "g/cm^2", "°") are accepted as well; anything else is refused so a value is never silently
mis-scaled.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

__all__ = ["UnitFamily", "convert", "family"]


@dataclass(frozen=True, slots=True)
class UnitFamily:
    """A canonical unit and the units convertible to it."""

    canonical: str
    factors: dict[str, float]
    # Conversions that are not a plain factor (HbA1c IFCC mmol/mol to NGSP %).
    functions: dict[str, Callable[[float], float]] | None = None
    # Dimensionless scores: any UCUM annotation ({T-score}, {SD}) and an absent unit mean the same.
    any_annotation: bool = False


def _hba1c_from_ifcc(mmol_per_mol: float) -> float:
    # NGSP/IFCC master equation: NGSP % = 0.09148 × IFCC mmol/mol + 2.152.
    return 0.09148 * mmol_per_mol + 2.152


_FAMILIES: Final[dict[str, UnitFamily]] = {
    # T- and Z-scores are counted in standard deviations: many DXA systems send the unit "SD" (not UCUM, but
    # unambiguous for a score).
    "score": UnitFamily("1", {"1": 1.0, "SD": 1.0, "sd": 1.0}, any_annotation=True),
    "ratio": UnitFamily("1", {"1": 1.0}, any_annotation=True),
    "count": UnitFamily("1", {"1": 1.0}, any_annotation=True),
    "bmd": UnitFamily("g/cm2", {"g/cm2": 1.0, "mg/cm2": 0.001, "g/cm^2": 1.0, "g/cm²": 1.0}),
    "hu": UnitFamily("[hnsf'U]", {"[hnsf'U]": 1.0, "HU": 1.0, "hu": 1.0, "[HU]": 1.0}),
    # '1' is a fraction: 0.14 means 14 %.
    "percent": UnitFamily("%", {"%": 1.0, "1": 100.0}),
    "angle": UnitFamily("deg", {"deg": 1.0, "°": 1.0, "degrees": 1.0}),
    "egfr": UnitFamily(
        "mL/min/{1.73_m2}",
        {
            "mL/min/{1.73_m2}": 1.0,
            "mL/min/1.73m2": 1.0,
            "mL/min/{1.73m2}": 1.0,
            "mL/min/1.73_m2": 1.0,
            # Synthea and many labs send eGFR as plain mL/min; the value is already per 1.73 m².
            "mL/min": 1.0,
        },
    ),
    "creatinine": UnitFamily("mg/dL", {"mg/dL": 1.0, "umol/L": 1 / 88.42, "µmol/L": 1 / 88.42}),
    "vitamin-d": UnitFamily("ng/mL", {"ng/mL": 1.0, "ug/L": 1.0, "nmol/L": 1 / 2.496}),
    "calcium": UnitFamily("mg/dL", {"mg/dL": 1.0, "mmol/L": 4.008}),
    "marker": UnitFamily("ug/L", {"ug/L": 1.0, "ng/mL": 1.0, "ng/L": 0.001, "pg/mL": 0.001}),
    "hba1c": UnitFamily("%", {"%": 1.0}, functions={"mmol/mol": _hba1c_from_ifcc}),
    "weight": UnitFamily("kg", {"kg": 1.0, "g": 0.001, "[lb_av]": 0.45359237}),
    "height": UnitFamily("cm", {"cm": 1.0, "m": 100.0, "mm": 0.1, "[in_i]": 2.54}),
    "bmi": UnitFamily("kg/m2", {"kg/m2": 1.0}),
    "mass": UnitFamily("mg", {"mg": 1.0, "g": 1000.0, "ug": 0.001, "mcg": 0.001}),
}


def family(name: str) -> UnitFamily:
    """The unit family of this name (a KeyError is a programming error)."""
    return _FAMILIES[name]


def convert(value: float, unit: str | None, family_name: str) -> float | None:
    """Convert a value to its family's canonical unit.

    Args:
        value: the number as sent.
        unit: its UCUM code (or, failing that, the human unit text); None when absent.
        family_name: which family the measure belongs to.

    Returns:
        The value in the canonical unit, or None when the unit does not belong to the family.
    """
    fam = _FAMILIES[family_name]
    key = unit.strip() if unit else None
    if fam.any_annotation and (not key or (key.startswith("{") and key.endswith("}"))):
        return value
    if key is None:
        return None
    factor = fam.factors.get(key)
    if factor is not None:
        return value * factor
    if fam.functions and key in fam.functions:
        return fam.functions[key](value)
    return None
