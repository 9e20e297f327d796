"""The dashboard reads at 1366x768 and 1920x1080, measured in a real headless Chromium over the
first-hour database (``seed.seed_first_hour``: the quickstart, whose worst case equals PGD, a
one-run experiment with one ε_train, a figure recorded by two re-runs):

- every chart is SVG; each legend and axis title lies inside the viewport and inside its chart's
  element (nothing clipped), and every chart has an x and a y axis title;
- Figure 1 draws each measure with its own dash, so PGD under the worst case still shows, and
  a one-point curve carries its note;
- the results page has no horizontal overflow, and the grid draws the model, threat model and
  accuracy headers without scrolling (glide-data-grid lists the columns it draws in the
  canvas's accessible table);
- progress bars are not red; each gallery picture is drawn once.

Viewport screenshots go to ``ROBUSTLAB_SCREENSHOT_DIR`` (default: the test's tmp_path).
"""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from playwright.sync_api import Browser, Locator, Page, sync_playwright

from tests.dashboard.screenshots import settle
from tests.dashboard.seed import Seeded, seed_first_hour
from tests.dashboard.serving import CHROMIUM, CHROMIUM_ARGS, serving

pytestmark = pytest.mark.browser

SIZES = [(1366, 768), (1920, 1080)]
TIMEOUT_MS = 60_000
SLACK_PX = 1.0
"""Sub-pixel rounding of bounding boxes."""
CHART = '[data-testid="stVegaLiteChart"]'
TABLE = '[data-testid="stDataFrame"]'


@pytest.fixture(scope="module")
def first_hour() -> Iterator[tuple[str, Seeded]]:
    """``robustlab dashboard`` over the first-hour database: its base URL and what was seeded."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium")
    with tempfile.TemporaryDirectory(prefix="robustlab-layout-") as tmp:
        root = Path(tmp)
        seeded = seed_first_hour(f"sqlite:///{root / 'robustlab.db'}", root / "artifacts")
        with serving(seeded, root) as base:
            yield base, seeded


@pytest.fixture(scope="module")
def dashboard(first_hour: tuple[str, Seeded]) -> str:
    return first_hour[0]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM),
                                              args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    directory = Path(os.environ.get("ROBUSTLAB_SCREENSHOT_DIR") or tmp_path)
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def _open(browser: Browser, url: str, size: tuple[int, int], heading: str, ready: str) -> Page:
    page = browser.new_page(viewport={"width": size[0], "height": size[1]})
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(url)
    settle(page, heading, ready)
    assert page.locator('[data-testid="stException"]').count() == 0
    return page


def _inside(box: dict[str, float] | None, outer: dict[str, float], what: str) -> None:
    assert box is not None, f"{what} is not drawn"
    assert box["x"] >= outer["x"] - SLACK_PX and box["y"] >= outer["y"] - SLACK_PX, \
        (what, box, outer)
    assert box["x"] + box["width"] <= outer["x"] + outer["width"] + SLACK_PX, (what, box, outer)
    assert box["y"] + box["height"] <= outer["y"] + outer["height"] + SLACK_PX, (what, box, outer)


def _viewport(page: Page) -> dict[str, float]:
    size = page.viewport_size
    assert size is not None
    return {"x": 0.0, "y": 0.0, "width": float(size["width"]), "height": float(size["height"])}


def _check_chart(page: Page, chart: Locator, index: int) -> dict[str, Any]:
    """Legends and axis titles of one chart inside the viewport and the chart's element."""
    svg = chart.locator("svg.marks").first
    svg.wait_for()
    assert chart.locator("canvas").count() == 0, f"chart {index} is drawn on a canvas"
    titles = chart.locator("g.role-axis-title")
    texts = [t.strip() for t in titles.all_text_contents()]
    assert len(texts) >= 2 and all(texts), f"chart {index} lacks axis titles: {texts}"
    legends = chart.locator("g.role-legend")
    for what, found in (("legend", legends), ("axis title", titles)):
        for n in range(found.count()):
            element = found.nth(n)
            element.scroll_into_view_if_needed()
            _inside(element.bounding_box(), _viewport(page), f"chart {index} {what} {n}")
            outer = chart.bounding_box()
            assert outer is not None
            _inside(element.bounding_box(), outer, f"chart {index} {what} {n} (clipped)")
    return {"axis_titles": texts, "legends": legends.count()}


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_tradeoff_charts_fit_and_show_every_series(dashboard: str, browser: Browser,
                                                   size: tuple[int, int], shots: Path) -> None:
    page = _open(browser, f"{dashboard}/tradeoffs", size, "Trade-offs", f"{CHART} svg.marks")
    try:
        page.screenshot(path=str(shots / f"tradeoffs-{size[0]}.png"))
        charts = page.locator(CHART)
        assert charts.count() == 5, "Figure 1 (l∞, l2), Theorem 2.1, trade-off, top-k"
        found = [_check_chart(page, charts.nth(i), i) for i in range(charts.count())]
        assert all(f["legends"] >= 1 for f in found)
        figure1 = charts.first
        legend_text = " ".join(figure1.locator("g.role-legend").all_text_contents())
        assert "pgd ε=0.3" in legend_text and "worst_case ε=0.3" in legend_text
        dashes = set(figure1.locator("g.mark-line path").evaluate_all(
            "paths => paths.map(p => p.getAttribute('stroke-dasharray') || 'solid')"))
        assert len(dashes) >= 3, f"standard, PGD and worst case each have a dash: {dashes}"
        note = figure1.locator("g.mark-text text", has_text="one training ε")
        assert note.count() == 1
        outer = figure1.bounding_box()
        assert outer is not None
        _inside(note.bounding_box(), outer, "the one-point note")
        assert page.get_by_text("my_first_robust · mnist_cnn: one training ε (0.3)").count() == 1
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    finally:
        page.close()


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_training_curves_fit(first_hour: tuple[str, Seeded], browser: Browser,
                             size: tuple[int, int], shots: Path) -> None:
    """The Compare page's panels (one per metric, as on the Runs page) and their legend."""
    base, seeded = first_hour
    runs = "&".join(f"run={seeded.fig1[('mnist', 'linf', eps)]}" for eps in (0.0, 0.1, 0.3))
    page = _open(browser, f"{base}/compare?{runs}", size, "Compare runs", f"{CHART} svg.marks")
    try:
        chart = page.locator(CHART).first
        found = _check_chart(page, chart, 0)
        assert found["legends"] == 1
        assert "epoch (training step)" in found["axis_titles"]
        chart.scroll_into_view_if_needed()
        page.screenshot(path=str(shots / f"compare-{size[0]}.png"))
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    finally:
        page.close()


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_results_table_shows_model_threat_and_accuracy(dashboard: str, browser: Browser,
                                                       size: tuple[int, int],
                                                       shots: Path) -> None:
    page = _open(browser, f"{dashboard}/results", size, "Results", TABLE)
    try:
        table = page.locator(TABLE).first
        table.scroll_into_view_if_needed()
        page.wait_for_timeout(300)
        page.screenshot(path=str(shots / f"results-{size[0]}.png"))
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        main = page.locator('[data-testid="stMain"]')
        assert main.evaluate("m => m.scrollWidth <= m.clientWidth"), "the page scrolls sideways"
        _inside(table.bounding_box(), _viewport(page) | {"height": 1e9}, "the results table")
        # glide-data-grid puts the columns it draws (no more) in its canvas's accessible table
        drawn = table.locator('canvas th[role="columnheader"]').all_text_contents()
        assert drawn[:5] == ["model", "training", "threat model", "attack", "accuracy"], drawn
    finally:
        page.close()


def _red_pixels(png: bytes) -> int:
    rgb = Image.open(io.BytesIO(png)).convert("RGB").tobytes()
    return sum(1 for i in range(0, len(rgb), 3)
               if rgb[i] > 150 and rgb[i + 1] < 110 and rgb[i + 2] < 110)


def test_progress_is_not_red(dashboard: str, browser: Browser, shots: Path) -> None:
    page = _open(browser, f"{dashboard}/", SIZES[0], "Runs", TABLE)
    try:
        table = page.locator(TABLE).first
        page.screenshot(path=str(shots / "runs-1366.png"))
        assert _red_pixels(table.screenshot()) == 0, "the runs table draws red progress bars"
        bar = page.locator('[data-testid="stProgress"]').first
        bar.wait_for()
        assert _red_pixels(bar.screenshot()) == 0, "the run's progress bar is red"
    finally:
        page.close()


def test_gallery_draws_each_picture_once(dashboard: str, browser: Browser, shots: Path) -> None:
    """Streamlit serves a picture at a URL named by its bytes' hash: one URL, one picture."""
    page = _open(browser, f"{dashboard}/galleries", SIZES[0], "Galleries",
                 '[data-testid="stImage"] img')
    try:
        page.screenshot(path=str(shots / "galleries-1366.png"))
        images = page.locator('[data-testid="stImage"] img')
        sources = images.evaluate_all("images => images.map(i => i.getAttribute('src'))")
        assert len(sources) == 5, "4 model pictures and one E1 figure (three runs recorded it)"
        assert len(set(sources)) == len(sources), sources
        assert page.get_by_text("These pictures side by side (PNG)").count() == 1, \
            "the gallery run's figure of its gradient pictures is a download, not a picture"
    finally:
        page.close()
