"""docs/model-card.md is generated from the parameter table; this fails when they differ."""

from __future__ import annotations

from service.domain import risk_parameters as P
from service.domain.model_card import render_model_card
from service.domain.risk_model import model_id
from tests.support.paths import ROOT


def test_the_model_card_matches_the_parameter_table() -> None:
    card = ROOT / "docs" / "model-card.md"
    assert card.read_text(encoding="utf-8") == render_model_card(), (
        "the model changed: run `refracture model-card --out docs/model-card.md` and commit the result"
    )


def test_the_card_states_what_a_model_card_must() -> None:
    card = render_model_card()
    for factor in P.FACTORS:
        assert f"`{factor.code}`" in card
    assert model_id() in card
    for words in (
        "decision support, not a diagnosis",
        "2 years",
        "fraction between 0 and 1",
        "Limits",
        "Unknown is not absent",
        "low below 10%",
        "two significant figures",
        "floor of 2%",
        "ceiling of 60%",
        "implied C-statistic",
        "Calibration against published rates",
        "at the floor",
        "8 in 10 patients like this one",
        "would narrow it most",
        "where the bound",
    ):
        assert words.lower() in card.lower(), words


def test_the_cards_figures_come_from_the_model() -> None:
    from service.domain.model_card import EXAMPLES, calibration_rows
    from service.domain.risk_model import cohort_probabilities, estimate

    card = render_model_card()
    risks = cohort_probabilities()
    assert f"Mean predicted risk **{100 * sum(risks) / len(risks):.1f} %**" in card
    for row in calibration_rows():
        assert f"| {row.subgroup} | {row.members} | {100 * row.mean:.1f} % |" in card
    for example in EXAMPLES:
        assert f"| {example.label} | {100 * estimate(example.inputs).probability:.1f} %" in card
    assert "```text" in card  # the histogram
    assert "# = 1 %" in card
