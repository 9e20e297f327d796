"""Screenshots of the dashboard over the first-hour database (``seed.seed_first_hour``), as a
new user sees it at 1366x768, for docs/img/:

    python -m tests.dashboard.screenshots after            # docs/img/<page>-1366-after.png
    python -m tests.dashboard.screenshots before --pages tradeoffs results

Each PNG is the viewport (not the full page), scrolled to the page's first chart or table,
so it stays small. The server and browser are the browser tests' (``test_browser``).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from playwright.sync_api import Page, sync_playwright

from tests.dashboard.conftest import REPO
from tests.dashboard.seed import seed_first_hour
from tests.dashboard.serving import CHROMIUM, CHROMIUM_ARGS, serving

OUT = REPO / "docs" / "img"
SIZES = {"1366": (1366, 768), "1920": (1920, 1080)}
PAGES = {  # name -> (url path, heading, what to scroll to)
    "tradeoffs": ("tradeoffs", "Trade-offs", '[data-testid="stVegaLiteChart"]'),
    "results": ("results", "Results", '[data-testid="stDataFrame"]'),
    "runs": ("", "Runs", '[data-testid="stDataFrame"]'),
    "galleries": ("galleries", "Galleries", '[data-testid="stImage"] img'),
    "submit": ("submit", "Submit a spec", ".spec-yaml"),
}


def settle(page: Page, heading: str, ready: str) -> None:
    page.get_by_role("heading", name=heading, exact=True).wait_for()
    page.locator(ready).first.wait_for()
    page.locator('[data-testid="stStatusWidget"]').wait_for(state="hidden")
    page.wait_for_timeout(1500)  # vega-embed and glide-data-grid draw after the script ends


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("label", help="file name suffix: before or after")
    parser.add_argument("--pages", nargs="+", default=["tradeoffs", "results"], choices=PAGES)
    parser.add_argument("--sizes", nargs="+", default=["1366"], choices=SIZES)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--full-page", action="store_true", help="the whole page (larger)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        seeded = seed_first_hour(f"sqlite:///{root / 'robustlab.db'}", root / "artifacts")
        with serving(seeded, root) as base, sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM),
                                                 args=CHROMIUM_ARGS, headless=True)
            for size in args.sizes:
                width, height = SIZES[size]
                for name in args.pages:
                    path, heading, ready = PAGES[name]
                    page = browser.new_page(viewport={"width": width, "height": height})
                    page.set_default_timeout(60_000)
                    page.goto(f"{base}/{path}")
                    settle(page, heading, ready)
                    page.locator(ready).first.scroll_into_view_if_needed()
                    page.wait_for_timeout(500)
                    target = args.out / f"{name}-{size}-{args.label}.png"
                    page.screenshot(path=str(target), full_page=args.full_page)
                    print(f"{target} ({target.stat().st_size // 1024} KiB)")
                    page.close()
            browser.close()


if __name__ == "__main__":
    main()
