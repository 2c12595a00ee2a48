"""The medicines the rules and the model care about, as the clinic thinks of them."""

from __future__ import annotations

from enum import StrEnum
from typing import Final


class Drug(StrEnum):
    """A medicine told apart by ingredient and, where it changes the indication, by strength."""

    DENOSUMAB_60 = "denosumab-60mg"  # osteoporosis, every 6 months
    DENOSUMAB_120 = "denosumab-120mg"  # oncology (skeletal-related events), monthly: out of scope
    DENOSUMAB = "denosumab"  # strength not stated
    ZOLEDRONIC_ACID_5 = "zoledronic-acid-5mg"  # osteoporosis, yearly
    ZOLEDRONIC_ACID_4 = "zoledronic-acid-4mg"  # oncology
    ZOLEDRONIC_ACID = "zoledronic-acid"  # strength not stated
    ALENDRONATE = "alendronate"
    RISEDRONATE = "risedronate"
    IBANDRONATE = "ibandronate"
    TERIPARATIDE = "teriparatide"
    ABALOPARATIDE = "abaloparatide"
    ROMOSOZUMAB = "romosozumab"
    RALOXIFENE = "raloxifene"
    CALCITONIN = "calcitonin"
    SGLT2_INHIBITOR = "sglt2-inhibitor"
    GLUCOCORTICOID = "glucocorticoid"


BISPHOSPHONATES: Final = frozenset(
    {Drug.ZOLEDRONIC_ACID_5, Drug.ZOLEDRONIC_ACID, Drug.ALENDRONATE, Drug.RISEDRONATE, Drug.IBANDRONATE}
)

# Drugs that follow denosumab or treat osteoporosis (docs/sources/alerts.md, 'What counts as evidence').
ANTI_OSTEOPOROSIS: Final = BISPHOSPHONATES | frozenset(
    {Drug.DENOSUMAB_60, Drug.DENOSUMAB, Drug.TERIPARATIDE, Drug.ABALOPARATIDE, Drug.ROMOSOZUMAB}
)

# Counted for the treatment gap as well (raloxifene per the HEDIS measure); calcitonin is a site setting.
TREATMENT_GAP_DRUGS: Final = ANTI_OSTEOPOROSIS | frozenset({Drug.RALOXIFENE})
