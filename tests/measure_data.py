"""Synthetic patients with known FLS-measure answers (docs/measures.md): the timelines the measure tests load as
FHIR transaction Bundles, through the API like an EHR would."""

from __future__ import annotations

from datetime import date
from typing import Any

from tests.support.records import administration, bundle, kyphoplasty, t_score

Timeline = tuple[str, str, str, date, date | None, list[date]]


def patient_bundle(
    pid: str, site: str, born: str, operated: date, dxa: date | None, doses: list[date]
) -> dict[str, Any]:
    """A transaction Bundle: the patient at a site, a kyphoplasty, a DXA and denosumab doses."""
    resources: list[dict[str, Any]] = [
        {
            "resourceType": "Patient",
            "id": pid,
            "gender": "female",
            "birthDate": born,
            "managingOrganization": {"reference": f"Organization/{site}"},
        },
        kyphoplasty(pid, operated, level=None),
    ]
    if dxa is not None:
        resources.append(t_score(f"{pid}-dxa", -2.9, pid, dxa.isoformat()))
    resources += [administration(pid, f"dmab-{n}", day) for n, day in enumerate(doses)]
    return bundle(resources)


# The timelines and what they make (docs/measures.md):
# n1 north: identified 2025-01-10, DXA day 22, denosumab day 10 and day 196 (186 days: on time), on time at day 365.
# n2 north: identified 2025-01-15, nothing since.
# s1 south: identified 2025-01-20, denosumab day 5 only: treated, stopped (not adherent at day 365).
# s2 south: 35 at the operation: not identified.
TIMELINES: list[Timeline] = [
    ("n1", "north-hospital", "1945-03-01", date(2025, 1, 10), date(2025, 2, 1), [date(2025, 1, 20), date(2025, 7, 25)]),
    ("n2", "north-hospital", "1945-03-01", date(2025, 1, 15), None, []),
    ("s1", "south", "1945-03-01", date(2025, 1, 20), None, [date(2025, 1, 25)]),
    ("s2", "south", "1990-03-01", date(2025, 1, 22), None, []),
]
