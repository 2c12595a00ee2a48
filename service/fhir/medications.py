"""Which drug, at which strength: medication codes, Medication resources and dose text to a Drug.

Ingredient first (ATC, RxNorm ingredient, or the name in the text), then strength from the Medication's
ingredient ratio, the dose given, or the product text. Product codes are a hint, never the only way: new denosumab
biosimilars keep arriving with new codes and suffixed names (docs/sources/codes.md §4.2).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal
from itertools import islice
from typing import Any, Final

from service.domain.drugs import Drug
from service.fhir import systems as S

__all__ = ["DrugMatch", "classify", "is_medication_code"]

CodeKey = tuple[str, str]
LocalTarget = Callable[[str, str], CodeKey | None]


@dataclass(frozen=True, slots=True)
class DrugMatch:
    """A recognised drug and the dose in mg when known."""

    drug: Drug
    dose_mg: float | None = None
    ingredient: str | None = None  # which glucocorticoid (prednisolone-equivalent doses need it)


# Ingredients by ATC code: exact codes, then class prefixes.
_ATC: Final[dict[str, str]] = {
    "M05BX04": "denosumab",
    "M05BA08": "zoledronic acid",
    "M05BA04": "alendronate",
    "M05BA07": "risedronate",
    "M05BA06": "ibandronate",
    "H05AA02": "teriparatide",
    "H05AA04": "abaloparatide",
    "M05BX06": "romosozumab",
    "G03XC01": "raloxifene",
    "H05BA01": "calcitonin",
}
_ATC_PREFIXES: Final[dict[str, str]] = {"A10BK": "sglt2", "H02AB": "glucocorticoid", "M05BB03": "alendronate"}

# RxNorm ingredient (IN) codes, V1 in docs/sources/codes.md §4.1/§4.3.
_RXNORM_INGREDIENTS: Final[dict[str, str]] = {
    "46041": "alendronate",
    "73056": "risedronate",
    "115264": "ibandronate",
    "77655": "zoledronic acid",
    "72143": "raloxifene",
    "8640": "glucocorticoid",
    "8638": "glucocorticoid",
    "6902": "glucocorticoid",
    "3264": "glucocorticoid",
    "5492": "glucocorticoid",
    "2878": "glucocorticoid",
}

# RxNorm products whose strength settles the indication (openFDA NDC records, docs/sources/codes.md §4.2).
_RXNORM_PRODUCTS: Final[dict[str, DrugMatch]] = {
    **dict.fromkeys(
        [
            "993452",
            "993456",
            "2715513",
            "2715520",
            "2723350",
            "2723357",
            "2725502",
            "2725509",
            "2746871",
            "2746878",
        ],
        DrugMatch(Drug.DENOSUMAB_60, 60.0),
    ),
    **dict.fromkeys(
        ["1046398", "1046402", "2717866", "2717542", "2717549", "2717551", "2717555"],
        DrugMatch(Drug.DENOSUMAB_120, 120.0),
    ),
    **dict.fromkeys(["705824", "705875"], DrugMatch(Drug.ZOLEDRONIC_ACID_5, 5.0)),
    **dict.fromkeys(["351114", "1114085"], DrugMatch(Drug.ZOLEDRONIC_ACID_4, 4.0)),
    **dict.fromkeys(["1435115", "1435117"], DrugMatch(Drug.TERIPARATIDE)),
    **dict.fromkeys(
        ["1373463", "1373471", "1488569", "1488574", "1545658", "1545666"], DrugMatch(Drug.SGLT2_INHIBITOR)
    ),
    "312617": DrugMatch(Drug.GLUCOCORTICOID, 5.0, "prednisone"),  # prednisone 5 MG Oral Tablet
    "198145": DrugMatch(Drug.GLUCOCORTICOID, 10.0, "prednisone"),  # prednisone 10 MG Oral Tablet
    "197582": DrugMatch(Drug.GLUCOCORTICOID, 4.0, "dexamethasone"),  # dexamethasone 4 MG Oral Tablet
    "904419": DrugMatch(Drug.ALENDRONATE, 10.0),  # Alendronic acid 10 MG Oral Tablet (Synthea)
}

# Names and brands in free text; suffixed biosimilar names (denosumab-bbdz) match the stem.
_NAME_PATTERNS: Final[list[tuple[re.Pattern[str], str]]] = [
    (re.compile(p, re.IGNORECASE), ingredient)
    for p, ingredient in [
        (r"denosumab|prolia|xgeva|jubbonti|wyost|bildyos|ospomyv|osvyrti|bomyntra", "denosumab"),
        (r"zoledron|reclast|aclasta|zometa", "zoledronic acid"),
        (r"alendron|fosamax|binosto", "alendronate"),
        (r"risedron|actonel|atelvia", "risedronate"),
        (r"ibandron|boniva", "ibandronate"),
        (r"teriparatide|forteo|bonsity", "teriparatide"),
        (r"abaloparatide|tymlos", "abaloparatide"),
        (r"romosozumab|evenity", "romosozumab"),
        (r"raloxifene|evista", "raloxifene"),
        (r"calcitonin", "calcitonin"),
        (r"gliflozin", "sglt2"),
        (
            r"\b(?:methyl)?predniso(?:lo)?ne\b|dexamethasone|hydrocortisone|\bcortisone\b|deflazacort",
            "glucocorticoid",
        ),
    ]
]

# Which glucocorticoid (docs/sources/codes.md §4.3: RxNorm ingredients, ATC H02AB members; names in text).
_STEROID_RXNORM: Final = {
    "8640": "prednisone",
    "8638": "prednisolone",
    "6902": "methylprednisolone",
    "3264": "dexamethasone",
    "5492": "hydrocortisone",
    "2878": "cortisone",
}
_STEROID_ATC: Final = {
    "H02AB02": "dexamethasone",
    "H02AB04": "methylprednisolone",
    "H02AB06": "prednisolone",
    "H02AB07": "prednisone",
    "H02AB09": "hydrocortisone",
    "H02AB10": "cortisone",
    "H02AB13": "deflazacort",
}
_STEROID_NAMES: Final = re.compile(
    r"methylprednisolone|prednisolone|prednisone|dexamethasone|hydrocortisone|cortisone|deflazacort", re.IGNORECASE
)

# Topical, inhaled and local glucocorticoids are not the systemic exposure that raises fracture risk.
_NOT_SYSTEMIC: Final = re.compile(r"inhal|topical|cream|ointment|nasal|ophthalmic|otic|rectal|enema|lotion", re.I)

_SIMPLE: Final[dict[str, Drug]] = {
    "alendronate": Drug.ALENDRONATE,
    "risedronate": Drug.RISEDRONATE,
    "ibandronate": Drug.IBANDRONATE,
    "teriparatide": Drug.TERIPARATIDE,
    "abaloparatide": Drug.ABALOPARATIDE,
    "romosozumab": Drug.ROMOSOZUMAB,
    "raloxifene": Drug.RALOXIFENE,
    "calcitonin": Drug.CALCITONIN,
    "sglt2": Drug.SGLT2_INHIBITOR,
    "glucocorticoid": Drug.GLUCOCORTICOID,
}

# Linear time on any text (medication text arrives from the EHR, feeds, bulk files and CDS Hooks, up to the 1 MB
# string limit): a number starts only where no digit or point precedes it, and every quantifier is bounded, so
# each position is tried in constant time. The unbounded "\d+" took hours on "denosumab" and a megabyte of digits
# (each of the n starting points scanned the rest of the digits: quadratic). No dose has more than 9 digits.
_NUMBER: Final = r"(?<![\d.])(\d{1,9}(?:\.\d{1,9})?)(?![\d.]\d)"
_AMOUNT: Final = re.compile(
    _NUMBER + r"\s{0,8}(MG|MCG|UG|µG)\b(?:\s{0,8}/\s{0,8}(\d{1,9}(?:\.\d{1,9})?)?\s{0,8}ML\b)?", re.IGNORECASE
)
_VOLUME: Final = re.compile(_NUMBER + r"\s{0,8}ML\b", re.IGNORECASE)
# Amounts and volumes are multiplied pairwise below: a product text names a handful, never thousands ("1 MG/1 ML"
# repeated took seconds per thousand repetitions, quadratic).
_MAX_AMOUNTS: Final = 16


def is_medication_code(system: str, code: str) -> bool:
    """Whether a coding alone names a drug refracture tracks."""
    if system == S.ATC:
        return code in _ATC or any(code.startswith(p) for p in _ATC_PREFIXES)
    if system == S.RXNORM:
        return code in _RXNORM_INGREDIENTS or code in _RXNORM_PRODUCTS
    return False


def classify(
    concepts: Iterable[dict[str, Any]],
    ingredients: Iterable[dict[str, Any]] = (),
    dose: dict[str, Any] | None = None,
    local_target: LocalTarget | None = None,
) -> DrugMatch | None:
    """Recognise a drug.

    Args:
        concepts: CodeableConcepts naming the medicine (medicationCodeableConcept, Medication.code, ingredient
            items).
        ingredients: Medication.ingredient entries, for their strength ratios.
        dose: the dose given or ordered, a Quantity.
        local_target: maps a local coding to a standard one.

    Returns:
        The drug and its dose in mg when known, or None when no tracked drug is named.
    """
    concept_list = [c for c in concepts if isinstance(c, dict)]
    texts: list[str] = []
    ingredient: str | None = None
    product: DrugMatch | None = None
    for concept in concept_list:
        if isinstance(concept.get("text"), str):
            texts.append(concept["text"])
        for coding in concept.get("coding") or []:
            if not isinstance(coding, dict):
                continue
            if isinstance(coding.get("display"), str):
                texts.append(coding["display"])
            system, code = coding.get("system"), coding.get("code")
            if not isinstance(system, str) or not isinstance(code, str):
                continue
            if local_target is not None:
                mapped = local_target(system, code)
                if mapped is not None:
                    system, code = mapped
            product = product or _product(system, code)
            ingredient = ingredient or _ingredient(system, code)
    text = " ".join(texts)
    if ingredient is None and product is None:
        ingredient = next((name for pattern, name in _NAME_PATTERNS if pattern.search(text)), None)
    if product is not None and product.drug not in (
        Drug.SGLT2_INHIBITOR,
        Drug.GLUCOCORTICOID,
        Drug.TERIPARATIDE,
    ):
        return product
    if ingredient is None:
        return product
    if ingredient == "glucocorticoid" and _NOT_SYSTEMIC.search(text):
        return None
    amounts = _amounts_mg(text, list(ingredients), dose)
    if ingredient == "glucocorticoid" or (product is not None and product.drug is Drug.GLUCOCORTICOID):
        given = _quantity_mg(dose) if dose else None  # the dose given or ordered first, then the strength
        return _glucocorticoid(concept_list, text, [_Amount(given, None)] if given is not None else amounts, product)
    return (
        _by_strength(ingredient, amounts)
        if ingredient in ("denosumab", "zoledronic acid")
        else DrugMatch(_SIMPLE[ingredient], _single(amounts))
    )


def _glucocorticoid(
    concepts: list[dict[str, Any]], text: str, amounts: list[_Amount], product: DrugMatch | None
) -> DrugMatch:
    name = product.ingredient if product is not None else None
    for concept in concepts:
        for coding in concept.get("coding") or []:
            if name is None and isinstance(coding, dict):
                code = str(coding.get("code") or "")
                name = _STEROID_RXNORM.get(code) if coding.get("system") == S.RXNORM else None
                name = name or (_STEROID_ATC.get(code) if coding.get("system") == S.ATC else None)
    found = _STEROID_NAMES.search(text)
    name = name or (found.group(0).lower() if found else None)
    dose = _single(amounts)
    return DrugMatch(Drug.GLUCOCORTICOID, dose if dose is not None else (product.dose_mg if product else None), name)


def _product(system: str, code: str) -> DrugMatch | None:
    return _RXNORM_PRODUCTS.get(code) if system == S.RXNORM else None


def _ingredient(system: str, code: str) -> str | None:
    if system == S.ATC:
        if code in _ATC:
            return _ATC[code]
        return next((name for prefix, name in _ATC_PREFIXES.items() if code.startswith(prefix)), None)
    if system == S.RXNORM:
        return _RXNORM_INGREDIENTS.get(code)
    return None


@dataclass(frozen=True, slots=True)
class _Amount:
    mg: float
    per_ml: float | None  # volume the amount is in, when written as a concentration


def _amounts_mg(text: str, ingredients: list[dict[str, Any]], dose: dict[str, Any] | None) -> list[_Amount]:
    found: list[_Amount] = []
    if dose:
        mg = _quantity_mg(dose)
        if mg is not None:
            found.append(_Amount(mg, None))
    for item in ingredients:
        strength = item.get("strength") if isinstance(item, dict) else None
        if isinstance(strength, dict):
            numerator = _quantity_mg(strength.get("numerator") or {})
            denominator = strength.get("denominator") or {}
            volume = _number(denominator.get("value"))
            unit = str(denominator.get("code") or denominator.get("unit") or "").lower()
            if numerator is not None:
                found.append(_Amount(numerator, volume if unit == "ml" else None))
    for match in islice(_AMOUNT.finditer(text), _MAX_AMOUNTS):
        mg = float(match.group(1)) * (0.001 if match.group(2).lower() in ("mcg", "ug", "µg") else 1.0)
        per = match.group(3)
        slash_ml = "/" in match.group(0)
        found.append(_Amount(mg, float(per) if per else (1.0 if slash_ml else None)))
    volumes = [float(m.group(1)) for m in islice(_VOLUME.finditer(text), _MAX_AMOUNTS)]
    # "1.7 ML denosumab 70 MG/ML": a concentration times the stated volume is the whole dose.
    for amount in list(found):
        if amount.per_ml == 1.0:
            for volume in volumes:
                found.append(_Amount(amount.mg * volume, None))
    return found


def _quantity_mg(quantity: dict[str, Any]) -> float | None:
    value = _number(quantity.get("value"))
    unit = str(quantity.get("code") or quantity.get("unit") or "").lower()
    if value is None:
        return None
    factor = {"mg": 1.0, "g": 1000.0, "ug": 0.001, "mcg": 0.001, "µg": 0.001}.get(unit)
    return value * factor if factor is not None else None


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float | Decimal):
        return float(value)
    return None


def _close(a: float, b: float) -> bool:
    return abs(a - b) < 1e-6 * max(1.0, b)


def _by_strength(ingredient: str, amounts: list[_Amount]) -> DrugMatch:
    if ingredient == "denosumab":
        for amount in amounts:
            total = amount.mg if amount.per_ml is None or amount.per_ml > 1 else None
            conc = amount.mg / amount.per_ml if amount.per_ml else None
            if (total is not None and _close(total, 60)) or (conc is not None and _close(conc, 60)):
                return DrugMatch(Drug.DENOSUMAB_60, 60.0)
            if (total is not None and _close(total, 120)) or (conc is not None and _close(conc, 70)):
                return DrugMatch(Drug.DENOSUMAB_120, 120.0)
        return DrugMatch(Drug.DENOSUMAB)
    for amount in amounts:
        conc = amount.mg / amount.per_ml if amount.per_ml else None
        total = amount.mg if amount.per_ml is None or amount.per_ml > 1 else None
        if (total is not None and _close(total, 5)) or (conc is not None and _close(conc, 0.05)):
            return DrugMatch(Drug.ZOLEDRONIC_ACID_5, 5.0)
        if (total is not None and _close(total, 4)) or (conc is not None and _close(conc, 0.04)):
            return DrugMatch(Drug.ZOLEDRONIC_ACID_4, 4.0)
    return DrugMatch(Drug.ZOLEDRONIC_ACID)


def _single(amounts: list[_Amount]) -> float | None:
    totals = {a.mg for a in amounts if a.per_ml is None}
    return totals.pop() if len(totals) == 1 else None
