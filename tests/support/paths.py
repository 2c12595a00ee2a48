"""Where things are: the repository, the test fixtures (data with provenance), the artefacts tests leave behind."""

from __future__ import annotations

from pathlib import Path
from typing import Final

__all__ = ["ARTIFACTS", "FIXTURES", "ROOT"]

ROOT: Final = Path(__file__).resolve().parents[2]
FIXTURES: Final = ROOT / "tests" / "fixtures"
ARTIFACTS: Final = ROOT / "tests" / "artifacts"
