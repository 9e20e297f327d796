"""The dashboard in a real headless Chromium: `robustlab dashboard` serves the seeded database,
and every page loads without a Streamlit exception; the Figure 1 chart and a gallery image
render. Screenshots go to test-artifacts/dashboard/ (git-ignored).

Debian's chromium (/usr/bin/chromium) is driven by the playwright package; nothing is
downloaded.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from tests.dashboard.conftest import REPO
from tests.dashboard.seed import Seeded
from tests.dashboard.serving import CHROMIUM, CHROMIUM_ARGS, serving

pytestmark = pytest.mark.browser

SCREENSHOTS = REPO / "test-artifacts" / "dashboard"
TIMEOUT_MS = 60_000
PAGES = {  # url path -> (title, a selector that appears once the page has rendered)
    "": ("Runs", '[data-testid="stDataFrame"]'),
    "submit": ("Submit a spec", ".spec-yaml"),
    "tradeoffs": ("Trade-offs", '[data-testid="stVegaLiteChart"]'),
    "galleries": ("Galleries", '[data-testid="stImage"] img'),
    "results": ("Results", '[data-testid="stDataFrame"]'),
    "compare": ("Compare runs", '[data-testid="stMultiSelect"]'),
}


@pytest.fixture(scope="module")
def dashboard(seeded: Seeded, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`robustlab dashboard --port N` over the seeded database; yields its base URL."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium")
    with serving(seeded, tmp_path_factory.mktemp("dashboard")) as base:
        yield base


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS,
                                              headless=True)
        yield chromium
        chromium.close()


def _open(browser: Browser, url: str, title: str, ready: str) -> Page:
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(url)
    page.get_by_role("heading", name=title, exact=True).wait_for()
    page.locator(ready).first.wait_for()
    page.locator('[data-testid="stStatusWidget"]').wait_for(state="hidden")
    return page


def figure1_is_drawn(page: Page) -> None:
    """Figure 1 is the first chart of Trade-offs: vega-embed drew it on a canvas (or SVG)."""
    drawn = page.locator('[data-testid="stVegaLiteChart"] canvas, '
                         '[data-testid="stVegaLiteChart"] svg.marks').first
    drawn.wait_for()
    box = drawn.bounding_box()
    assert box is not None and box["width"] > 100 and box["height"] > 100
    drawn.screenshot(path=str(SCREENSHOTS / "figure1.png"))


def gallery_image_is_drawn(page: Page) -> None:
    """The first gallery picture is the seeded 56-pixel PNG, decoded by the browser."""
    image = page.locator('[data-testid="stImage"] img').first
    page.wait_for_function("img => img.complete && img.naturalWidth > 0",
                           arg=image.element_handle())
    assert image.evaluate("img => img.naturalWidth") == 56
    assert page.get_by_text("target_agreement = 0.93").count() == 2


RENDER_CHECKS = {"tradeoffs": figure1_is_drawn, "galleries": gallery_image_is_drawn}


@pytest.mark.parametrize("path", list(PAGES))
def test_page_loads_without_exception(dashboard: str, browser: Browser, path: str) -> None:
    title, ready = PAGES[path]
    page = _open(browser, f"{dashboard}/{path}", title, ready)
    try:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / f"{path or 'runs'}.png"), full_page=True)
        assert page.locator('[data-testid="stException"]').count() == 0
        if path in RENDER_CHECKS:
            RENDER_CHECKS[path](page)
    finally:
        page.close()


def test_compare_page_draws_a_linked_comparison(dashboard: str, browser: Browser,
                                                seeded: Seeded) -> None:
    """``/compare?run=A&run=B`` opens with both runs picked: spec diff, curves, results."""
    standard, robust = (seeded.fig1[("mnist", "linf", eps)] for eps in (0.0, 0.3))
    page = _open(browser, f"{dashboard}/compare?run={standard}&run={robust}", "Compare runs",
                 '[data-testid="stVegaLiteChart"]')
    try:
        for heading in ("Spec differences", "Metric curves", "Results"):
            page.get_by_role("heading", name=heading).wait_for()
        assert page.locator('[data-testid="stDataFrame"]').count() == 3
        assert page.locator('[data-testid="stException"]').count() == 0
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / "compare_two_runs.png"), full_page=True)
    finally:
        page.close()
