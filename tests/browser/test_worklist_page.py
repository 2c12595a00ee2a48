"""A care coordinator's round in a real browser: filter, open a patient, read the chart, acknowledge, dismiss."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

pytestmark = pytest.mark.integration

COORDINATOR_TOKEN = "test-coordinator"  # a development token of tests/support/tokens.py


def sign_in(page: Page, server: str) -> None:
    page.goto(f"{server}/worklist")
    # Not signed in: the sign-in page, which brings the coordinator back where they were going.
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    page.get_by_label("Token").fill(COORDINATOR_TOKEN)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Worklist")).to_be_visible()


def test_a_coordinator_works_through_an_alert(page: Page, server: str, artifacts: Path) -> None:
    sign_in(page, server)
    expect(page.get_by_text("Signed in as")).to_contain_text("coordinator.one")

    # Filter by the labels a person sees.
    page.get_by_label("Name or MRN").fill("zeta")
    page.get_by_label("Alert", exact=True).select_option(label="Denosumab dose overdue")
    page.get_by_role("button", name="Apply filters").click()
    rows = page.locator("table.worklist tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.first).to_contain_text("Zeta, Ines")
    expect(rows.first).to_contain_text("Overdue")
    page.screenshot(path=str(artifacts / "worklist-filtered.png"), full_page=True)

    # Open the patient and see the chart of the factors' contributions.
    rows.first.get_by_role("link", name="Zeta, Ines").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Zeta, Ines")
    chart = page.get_by_role("img", name="What moves this patient's risk")
    expect(chart).to_be_visible()
    assert chart.locator("rect").count() >= 3
    box = chart.bounding_box()
    assert box is not None
    assert box["width"] > 400
    assert box["height"] > 100
    expect(page.get_by_role("heading", name="Missing inputs")).to_be_visible()
    expect(page.get_by_role("heading", name="Medication timeline")).to_be_visible()
    page.screenshot(path=str(artifacts / "patient.png"), full_page=True)

    # Acknowledge the overdue dose.
    alert = page.locator("article.alert", has=page.get_by_role("heading", name="Denosumab dose overdue"))
    alert.get_by_role("button", name="Apply").click()
    expect(page.get_by_role("status")).to_have_text("Alert acknowledged.")
    expect(alert).to_contain_text("Acknowledged")
    expect(alert.locator("table.history")).to_contain_text("coordinator.one")

    # Dismiss it with a reason, using the keyboard only.
    alert.get_by_label("Action on Denosumab dose overdue").select_option("dismiss")
    field = alert.get_by_label("Assignee, reason or note for Denosumab dose overdue")
    field.fill("treated by the GP")
    field.press("Enter")
    expect(page.get_by_role("status")).to_have_text("Alert dismissed.")
    closed = page.get_by_text("Closed alerts (1)")
    expect(closed).to_be_visible()
    closed.click()
    expect(page.get_by_text("Reason: treated by the GP")).to_be_visible()
    page.screenshot(path=str(artifacts / "patient-after-dismiss.png"), full_page=True)

    # Signing out ends the session: the list asks for sign-in again.
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Signed out")).to_be_visible()
    page.goto(f"{server}/worklist")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    sign_in(page, server)

    # Back on the worklist the dismissed alert is gone from the filter.
    page.get_by_label("Name or MRN").fill("zeta")
    page.get_by_label("Name or MRN").press("Enter")
    expect(page.locator("table.worklist tbody tr", has_text="Denosumab dose overdue")).to_have_count(1)


def test_the_skip_link_is_the_first_stop_for_the_keyboard(page: Page, server: str) -> None:
    sign_in(page, server)
    page.keyboard.press("Tab")
    focused = page.evaluate("document.activeElement.textContent")
    assert focused == "Skip to content"
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"
