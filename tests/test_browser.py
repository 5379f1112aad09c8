"""A real browser (Debian's chromium, driven by Playwright) uses the Space like a person would."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]
SCREENSHOT = Path(__file__).resolve().parents[1] / "docs" / "space_screenshot.png"


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make browser` installs Debian's chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield b
        b.close()


def test_click_an_example_and_see_verdict_and_overlay(served, browser, tmp_path):
    url, _ = served
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(url)  # not "networkidle": the queue keeps an event stream open
    page.get_by_text("Surface defect classifier").first.wait_for()
    # Gradio renders examples as a gallery of thumbnails; the first is defects_brushed.png.
    page.locator(".gallery-item, button.gallery-item, [data-testid='examples'] button").first.click()
    verdict = page.locator("text=/P\\(defects\\) = /")
    verdict.wait_for(timeout=60_000)  # the example's cached result
    with page.expect_request(lambda r: "/queue/join" in r.url):  # and a fresh run through the model
        page.get_by_role("button", name="Classify", exact=True).click()
    page.wait_for_function(
        "() => [...document.querySelectorAll('[data-testid=status-tracker]')].every(e => e.classList.contains('hide'))",
        timeout=60_000,
    )
    text = verdict.first.inner_text()
    assert "defects" in text and "threshold" in text
    overlay = page.locator(".block", has=page.get_by_text("Where the model sees a defect", exact=True)).locator("img")
    overlay.first.wait_for(timeout=30_000)
    assert overlay.first.evaluate("img => img.complete && img.naturalWidth") > 0
    shot = tmp_path / "space.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    if os.environ.get("UPDATE_SCREENSHOT"):
        SCREENSHOT.parent.mkdir(exist_ok=True)
        shutil.copy(shot, SCREENSHOT)
    page.close()


def test_the_decision_control_moves_the_verdict(served, browser):
    from tests.test_operating_point import _flipping_example

    url, classifier = served
    path, _ = _flipping_example(classifier)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(url)
    page.get_by_text("Decision: move it along the model's operating curve").first.click()
    page.locator("input[type=file]").first.set_input_files(str(path))
    verdicts = {}
    for preset, expected_rate in (("Catch every defect I can", "recall=0.99"), ("Few false alarms", "false-alarms=0.01")):
        page.get_by_role("button", name=preset, exact=True).click()
        shown = f"{classifier.threshold_for(expected_rate):.4f}"
        page.get_by_text(f"At threshold {shown}").first.wait_for(timeout=30_000)  # the expected rates follow the control
        page.get_by_role("button", name="Classify", exact=True).click()
        verdict = page.locator(f"text=/\\(threshold {shown}\\)/")
        verdict.first.wait_for(timeout=60_000)
        verdicts[preset] = verdict.first.inner_text().split(":")[0].strip("* ")
    assert verdicts == {"Catch every defect I can": "defects", "Few false alarms": "no_defects"}
    page.close()
