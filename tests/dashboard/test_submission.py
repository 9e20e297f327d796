"""The Submit page's logic: validation with problems at their lines, the annotated YAML, saving,
starting a detached `robustlab run`, and the queue's clean refusal when no broker answers."""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from contract.limits import get_limits
from dashboard import submission
from service.settings import get_settings
from service.store import queries
from service.store.migrate import upgrade
from service.store.repository import Store
from tests.dashboard.conftest import REPO
from tests.dashboard.seed import Seeded

BAD = """name: bad
kind: theory
distribution:
  p: 1.5
  d: 10
n_train: 100
epochz: 3
"""
GOOD = """name: dash_tiny_theory
kind: theory
distribution: {p: 0.7, d: 20, eta: 0.9}
n_train: 200
n_test: 200
epochs: 5
models: [averaging]
eps: [0.1]
sweep:
  seed: [0, 1]
"""


def test_valid_spec_counts_its_runs() -> None:
    validation = submission.validate_spec(GOOD, "tiny.yaml")
    assert validation.ok and validation.problems == ()
    assert validation.loaded is not None and validation.loaded.spec.name == "dash_tiny_theory"
    assert validation.runs == 2


def test_problems_are_marked_at_their_lines() -> None:
    validation = submission.validate_spec(BAD, "bad.yaml")
    assert not validation.ok
    assert {(p.line, p.path) for p in validation.problems} == {(4, "distribution.p"),
                                                                (7, "epochz")}
    page = submission.annotated_yaml_html(BAD, validation.problems)
    marked = re.findall(r'class="problem-line" data-line="(\d+)"', page)
    assert marked == ["4", "7"]
    assert len(re.findall(r'class="spec-line"', page)) == len(BAD.splitlines()) - 2
    assert "did you mean &#39;epochs&#39;" in page, "messages are HTML-escaped"
    assert "\n" not in page


def test_problem_past_the_end_marks_the_last_line() -> None:
    text = "name: [unclosed\n"
    problems = submission.validate_spec(text, "broken.yaml").problems
    assert [p.line for p in problems] == [2], "YAML reports the end of the stream"
    assert list(submission.problems_by_line(problems, len(text.splitlines()))) == [1]
    assert 'class="problem-line" data-line="1"' in submission.annotated_yaml_html(text, problems)


def test_spec_files_and_save(tmp_path: Path) -> None:
    (tmp_path / "paper").mkdir()
    (tmp_path / "paper" / "e1.yaml").write_text("x")
    (tmp_path / "a.yml").write_text("x")
    (tmp_path / "notes.txt").write_text("x")
    assert submission.spec_files(tmp_path) == [Path("a.yml"), Path("paper/e1.yaml")]
    first = submission.save_spec(GOOD, "tiny", tmp_path / "out")
    assert first == submission.save_spec(GOOD, "tiny", tmp_path / "out")
    assert first.read_text() == GOOD and first.name.startswith("tiny-")
    assert submission.save_spec(GOOD + "\n", "tiny", tmp_path / "out") != first


@pytest.mark.parametrize("name", ["evaluate_pgd.yaml", "evaluate_autoattack.yaml"])
def test_shipped_templates_are_templates_not_valid_specs(name: str) -> None:
    """Their `source` is the placeholder replace-me.pt, for `schedule add` to fill in."""
    text = (REPO / "specs" / name).read_text()
    validation = submission.validate_spec(text, f"specs/{name}")
    assert validation.ok and not validation.runnable
    assert validation.template is not None and validation.template.startswith(
        submission.FILL_IN_SOURCE)
    assert submission.template_note(text) == validation.template, "the file list says so too"


def test_template_rule() -> None:
    placeholder = GOOD.replace("kind: theory", "kind: theory  # source: replace-me.pt")
    assert submission.validate_spec(GOOD, "tiny.yaml").runnable
    assert submission.template_note(placeholder) is None, "a comment names no checkpoint"
    assert submission.template_note("# Sweep\n#  template: copy me\n" + GOOD) == "copy me"
    assert submission.template_note(GOOD + "# template: too late\n") is None, \
        "only the leading comments mark a template"
    quickstart = (REPO / "specs" / "quickstart.yaml").read_text()
    assert submission.validate_spec(quickstart, "specs/quickstart.yaml").runnable
    evaluate = (REPO / "specs" / "evaluate_pgd.yaml").read_text()
    unmarked = "\n".join(line for line in evaluate.splitlines() if "template:" not in line)
    filled = unmarked.replace("replace-me.pt", "runs/abc/checkpoints/final.pt")
    assert submission.validate_spec(unmarked, "e.yaml").template == \
        f"{submission.FILL_IN_SOURCE} (its checkpoint is a placeholder)"
    assert submission.validate_spec(filled, "e.yaml").runnable


def test_submit_page_shows_a_template_as_a_template(dashboard_env: Seeded) -> None:
    at = AppTest.from_file(str(REPO / "dashboard" / "views" / "submit.py"),
                           default_timeout=60).run()
    assert at.selectbox(key="submit_pick").value == "quickstart.yaml", "never a template first"
    options = at.selectbox(key="submit_pick").options
    assert "evaluate_pgd.yaml (template)" in options and "quickstart.yaml" in options
    at.selectbox(key="submit_pick").set_value("evaluate_pgd.yaml")
    at.run()
    assert not at.exception
    assert not at.success, "a template is not reported as valid"
    assert [w.value.split(".")[0] for w in at.warning] == ["Template: fill in `source`"]
    assert not [b for b in at.button if b.key in ("submit_run", "submit_queue")]
    assert any("schedule add specs/evaluate_pgd.yaml" in c.value for c in at.code)
    at.selectbox(key="submit_pick").set_value("quickstart.yaml")
    at.run()
    assert [s.value for s in at.success] == ["Valid train spec, 2 runs"]


def closed_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def migrated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """An empty migrated database in the environment (the settings the CLI and queue read)."""
    url = f"sqlite:///{tmp_path / 'robustlab.db'}"
    upgrade(url)
    monkeypatch.setenv("ROBUSTLAB_DATABASE_URL", url)
    monkeypatch.setenv("ROBUSTLAB_ARTIFACT_DIR", str(tmp_path / "artifacts"))
    monkeypatch.setenv("ROBUSTLAB_RUNS_DIR", str(tmp_path / "runs"))
    get_settings.cache_clear()
    get_limits.cache_clear()
    yield url
    get_settings.cache_clear()
    get_limits.cache_clear()


def test_queue_refuses_cleanly_without_a_broker(migrated: str,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROBUSTLAB_BROKER_URL", f"redis://user:secret@127.0.0.1:{closed_port()}/0")
    get_settings.cache_clear()
    get_limits.cache_clear()
    loaded = submission.validate_spec(GOOD, "tiny.yaml").loaded
    assert loaded is not None
    with pytest.raises(submission.QueueUnavailable, match="queue not available") as refused:
        submission.submit_to_queue(loaded)
    assert "secret" not in str(refused.value)
    assert queries.database_status(migrated).runs == 0, "nothing recorded without a broker"


def test_local_run_is_detached_and_records_its_runs(migrated: str, tmp_path: Path) -> None:
    """A real `robustlab run` in the background records both sweep cells and runs them."""
    url = migrated
    spec = submission.save_spec(GOOD, "dash_tiny_theory", tmp_path / "submitted")
    launched = submission.start_local_run(spec)
    assert launched.command[-2:] == ("run", str(spec))
    store = Store(url)
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            runs = store.list_runs(experiment="dash_tiny_theory")
            if len(runs) == 2 and all(r.status in ("succeeded", "failed") for r in runs):
                break
            time.sleep(0.5)
        log = launched.log_path.read_text()
        assert [r.status for r in runs] == ["succeeded", "succeeded"], log
        assert len(store.results(experiment="dash_tiny_theory")) == 2 * 2, "clean + exact_linear"
    finally:
        store.close()
    assert "dash_tiny_theory: 2 run(s)" in launched.log_path.read_text()
