"""The Submit page takes no Markdown or HTML from a spec; the Runs page shows dead runs as stale.

Issue 13 (e): a crafted key made the browser fetch an image, because problems were rendered
through Markdown. Here the crafted spec is submitted through the page and no Markdown element
(the only elements a browser would render as Markdown/HTML) carries its syntax.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from contract.status import RunStatus
from dashboard.submission import annotated_yaml_html, inert_html, validate_spec
from service.recording import STALE_AFTER_S
from service.store.repository import Store
from tests.dashboard.conftest import REPO, point_settings_at
from tests.dashboard.seed import Seeded

IMAGE = "![x](http://127.0.0.1:9/pixel.png)"
CRAFTED = f"""name: crafted
kind: theory
"`{IMAGE}<img src=http://127.0.0.1:9/b.png>": 1
description: "$\\\\int$ :red[alarm] <script>alert(1)</script>"
"""


def _page(name: str) -> AppTest:
    at = AppTest.from_file(str(REPO / "dashboard" / "views" / f"{name}.py"),
                           default_timeout=60).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_inert_html_leaves_no_markup_and_shows_the_same_text() -> None:
    shown = inert_html(IMAGE + "<b>&")
    assert not re.search(r"[\[\]()!<>]", shown)
    assert shown.startswith("&#33;&#91;x&#93;&#40;http&#58;")
    validation = validate_spec(CRAFTED, "up.yaml")
    page = annotated_yaml_html(CRAFTED, validation.problems)
    assert "<img" not in page and "<script" not in page and "](" not in page and "![" not in page


def test_submit_page_renders_a_crafted_spec_as_plain_text(dashboard_env: Seeded) -> None:
    at = _page("submit")
    at.radio(key="submit_source").set_value("Write YAML")
    at.run()
    at.text_area(key="submit_text").input(CRAFTED)
    at.run()
    assert not at.exception
    assert [e.value for e in at.error] == ["1 problem"]
    (problems,) = [c.value for c in at.code]
    assert IMAGE in problems, "the problem is shown, verbatim, as code"
    for element in (*at.markdown, *at.error, *at.success, *at.warning, *at.info, *at.caption):
        text = str(element.value)
        assert "![" not in text and "<img" not in text and "<script" not in text, text
        assert ":red[" not in text and "$\\int$" not in text, text


def test_runs_page_shows_a_run_without_heartbeat_as_stale(fresh_seeded: Seeded,
                                                           monkeypatch: pytest.MonkeyPatch,
                                                           tmp_path: Path) -> None:
    monkeypatch.chdir(REPO)
    point_settings_at(monkeypatch, fresh_seeded, tmp_path / "runs")
    beat = datetime.now(UTC) - timedelta(seconds=5 * STALE_AFTER_S)
    store = Store(fresh_seeded.url)
    try:
        store.set_status(fresh_seeded.running, RunStatus.RUNNING, heartbeat_at=beat,
                         started_at=beat - timedelta(seconds=60))
    finally:
        store.close()
    at = _page("runs")
    listed = at.dataframe[0].value.set_index("id")
    status = listed.loc[fresh_seeded.running, "status"]
    assert status.startswith("stale (no heartbeat for "), status
    assert listed.loc[fresh_seeded.running, "duration_s"] == pytest.approx(60.0)
    at.selectbox(key="runs_run").set_value(fresh_seeded.running)
    at.run()
    assert any(w.value.startswith("Stale: this run is marked running") for w in at.warning)
