"""Vertebral levels from a bodySite: refracture's level codes, SNOMED CT, or text such as "T12-L1"."""

from __future__ import annotations

import re
from typing import Any, Final

from service.domain.spine import LEVELS, POSITION
from service.fhir import systems as S

__all__ = ["ALL_LEVELS", "levels_of"]

ALL_LEVELS: Final = LEVELS
_INDEX: Final = POSITION

# Whole vertebra (DICOM CID 7603) and vertebral body concepts (V1/V2 in docs/sources/codes.md §2.3).
_SNOMED_LEVELS: Final[dict[str, str]] = {
    "7610001": "T10",
    "12989004": "T11",
    "23215003": "T12",
    "66794005": "L1",
    "14293000": "L2",
    "36470004": "L3",
    "11994002": "L4",
    "49668003": "L5",
    "52120002": "T11",
    "280849005": "T12",
    "61032001": "L1",
    "53983007": "L2",
}

_LEVEL_TEXT: Final = re.compile(r"\b([CTLS])\s?(\d{1,2})\b", re.IGNORECASE)
# Bounded quantifiers only: bodySite text is the EHR's (linear time on any text; tests/unit/test_hostile_input.py).
_RANGE_TEXT: Final = re.compile(r"\b([CTLS])\s?(\d{1,2})\s{0,8}(?:-|–|to)\s{0,8}([CTLS])?\s?(\d{1,2})\b", re.IGNORECASE)


def _level(letter: str, number: str) -> str | None:
    name = f"{letter.upper()}{int(number)}"
    return name if name in _INDEX else None


def _from_text(text: str) -> list[str]:
    found: list[str] = []
    for match in _RANGE_TEXT.finditer(text):
        start = _level(match.group(1), match.group(2))
        end = _level(match.group(3) or match.group(1), match.group(4))
        if start and end and _INDEX[start] <= _INDEX[end]:
            found.extend(ALL_LEVELS[_INDEX[start] : _INDEX[end] + 1])
    remainder = _RANGE_TEXT.sub(" ", text)
    for match in _LEVEL_TEXT.finditer(remainder):
        level = _level(match.group(1), match.group(2))
        if level:
            found.append(level)
    return found


def levels_of(body_sites: Any) -> list[str]:
    """The vertebral levels named by one bodySite CodeableConcept or a list of them, in spinal order."""
    sites = body_sites if isinstance(body_sites, list) else [body_sites]
    found: list[str] = []
    for site in sites:
        if not isinstance(site, dict):
            continue
        coded = False
        for coding in site.get("coding") or []:
            if not isinstance(coding, dict):
                continue
            code = coding.get("code")
            system = coding.get("system")
            if system == S.VERTEBRAL_LEVEL and isinstance(code, str) and code.upper() in _INDEX:
                found.append(code.upper())
                coded = True
            elif system == S.SNOMED and code in _SNOMED_LEVELS:
                found.append(_SNOMED_LEVELS[code])
                coded = True
        if not coded and isinstance(site.get("text"), str):
            found.extend(_from_text(site["text"]))
    return sorted(set(found), key=_INDEX.__getitem__)
