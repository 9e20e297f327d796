"""What the Submit page does, without Streamlit: validate, annotate, save, run or queue a spec.

Kept apart from the page so it can be tested directly (Streamlit's AppTest cannot drive a file
uploader) and so the page stays a thin layout of widgets.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from contract.specs.loading import LoadedSpec, Problem, SpecError, load_spec_text
from contract.specs.sweep import expand
from service.store.submitter import SUBMITTED_BY_ENV, submitting_as

if TYPE_CHECKING:  # the queue module imports Celery; load it only when queueing
    from service.queue.submission import Submission


TEMPLATE_MARK = re.compile(r"#\s*template\s*:\s*(.*)", re.IGNORECASE)
"""A comment ``# template: what to fill in`` in a spec's leading comments marks a template."""
PLACEHOLDER_CHECKPOINTS = frozenset({"replace-me.pt", "<checkpoint>"})
"""Checkpoint file names that stand for "fill this in" (``specs/evaluate_*.yaml`` ship
``replace-me.pt``; ``service.scheduler`` fills ``<checkpoint>`` in)."""
FILL_IN_SOURCE = "fill in `source`"


@dataclass(frozen=True)
class Validation:
    """The outcome of validating one YAML text: the spec, or every problem with its line."""

    loaded: LoadedSpec | None
    problems: tuple[Problem, ...] = ()
    runs: int = 0
    """How many runs (sweep cells) the spec expands to."""
    template: str | None = None
    """Why the spec is a template (valid YAML to fill in, not to run as it is), or ``None``."""

    @property
    def ok(self) -> bool:
        return self.loaded is not None

    @property
    def runnable(self) -> bool:
        return self.loaded is not None and self.template is None


def template_mark(text: str) -> str | None:
    """The text after ``# template:`` in the spec's leading comment block, or ``None``."""
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped:
            continue
        if not stripped.startswith("#"):
            return None
        if (found := TEMPLATE_MARK.fullmatch(stripped)) is not None:
            return found.group(1).strip() or FILL_IN_SOURCE
    return None


def _checkpoints(value: Any) -> Iterator[str]:
    """Every ``checkpoint`` string in a dumped spec, however deep (source:, models: [...])."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "checkpoint" and isinstance(item, str):
                yield item
            else:
                yield from _checkpoints(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _checkpoints(item)


def template_note(text: str, loaded: LoadedSpec | None = None) -> str | None:
    """Why a spec is a template, or ``None``: a ``# template:`` comment at its top, or (when
    loaded) a checkpoint that is a placeholder file name such as ``replace-me.pt``. Without
    ``loaded`` (the file list) a placeholder name outside comments counts."""
    if (mark := template_mark(text)) is not None:
        return mark
    if loaded is not None:
        paths = list(_checkpoints(loaded.spec.model_dump(mode="json")))
    else:
        paths = re.findall(r"[^\s{}:,'\"]+", "\n".join(line.split("#", 1)[0]
                                                       for line in text.splitlines()))
    if any(PurePosixPath(path).name in PLACEHOLDER_CHECKPOINTS for path in paths):
        return f"{FILL_IN_SOURCE} (its checkpoint is a placeholder)"
    return None


def validate_spec(text: str, source: str) -> Validation:
    """Validate YAML exactly as ``robustlab validate`` does, collecting problems instead of
    raising; a valid template (``template_note``) is valid but not runnable."""
    try:
        loaded = load_spec_text(text, source=source)
        runs = len(expand(loaded.spec))
    except SpecError as exc:
        return Validation(loaded=None, problems=tuple(exc.problems))
    return Validation(loaded=loaded, runs=runs, template=template_note(text, loaded))


def problems_by_line(problems: tuple[Problem, ...], n_lines: int) -> dict[int, list[str]]:
    """Messages keyed by 1-based line; lines past the end (a missing key at EOF) go to the last."""
    by_line: dict[int, list[str]] = defaultdict(list)
    for problem in problems:
        if problem.line is not None:
            line = min(max(problem.line, 1), max(n_lines, 1))
            by_line[line].append(f"{problem.path}: {problem.message}" if problem.path
                                 else problem.message)
    return dict(by_line)


_INERT = frozenset('&<>"\'[]()!`*_~$:|\\#{}=^')
"""Characters written as numeric references in user text: HTML's specials, and everything
Markdown, Streamlit's directives (``:red[...]``, ``:material/...:``) or its LaTeX (``$``) could
read as syntax. The browser shows them as the characters; no parser sees syntax in them."""


def inert_html(text: str) -> str:
    """``text`` as HTML text that neither HTML nor Markdown can read anything into.

    ``html.escape`` alone stops tags but leaves ``![x](http://...)`` to a Markdown renderer
    (an image the browser would fetch): a spec's keys and values reach this page.
    """
    return "".join(f"&#{ord(char)};" if char in _INERT else char for char in text)


def annotated_yaml_html(text: str, problems: tuple[Problem, ...]) -> str:
    """The YAML with line numbers, each line with a problem highlighted and its messages below.

    One line of HTML (no newlines), so Markdown rendering cannot break the block at a blank line;
    every piece of user text goes through ``inert_html``.
    """
    lines = text.splitlines() or [""]
    by_line = problems_by_line(problems, len(lines))
    parts = ['<div class="spec-yaml" style="font-family:monospace;white-space:pre;'
             'font-size:0.85em;line-height:1.4;overflow-x:auto">']
    for number, line in enumerate(lines, start=1):
        messages = by_line.get(number, [])
        style = "background:#ffd7d7;" if messages else ""
        css_class = "problem-line" if messages else "spec-line"
        parts.append(
            f'<div class="{css_class}" data-line="{number}" style="{style}">'
            f'<span style="color:#888">{number:>4} </span>{inert_html(line) or " "}</div>'
        )
        parts.extend(
            f'<div class="problem-message" data-line="{number}" style="color:#b00020">'
            f"{' ' * 5}^ {inert_html(message)}</div>"
            for message in messages
        )
    parts.append("</div>")
    return "".join(parts)


def spec_files(root: Path) -> list[Path]:
    """The YAML specs under ``root`` (e.g. ``specs/``), relative paths, sorted."""
    if not root.is_dir():
        return []
    return sorted(p.relative_to(root) for p in root.rglob("*.y*ml") if p.is_file())


def save_spec(text: str, name: str, directory: Path) -> Path:
    """Write the text to ``directory/<name>-<hash>.yaml``: the same text always gets one file."""
    digest = hashlib.sha256(text.encode()).hexdigest()[:10]
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}-{digest}.yaml"
    path.write_text(text)
    return path


@dataclass(frozen=True)
class LocalRun:
    """A ``robustlab run`` started in the background by the dashboard."""

    command: tuple[str, ...]
    log_path: Path
    pid: int


def start_local_run(spec_path: Path, submitted_by: str | None = None) -> LocalRun:
    """Start ``robustlab run SPEC`` detached (own session, output to a log beside the spec).

    The page must not block for the length of a training run, and the run must survive the
    browser tab (and a restart of the dashboard) that started it. It is reaped as soon as it
    ends (``local_runs`` says how); after a restart of the dashboard, init reaps it.
    """
    command = (sys.executable, "-m", "service.cli", "run", str(spec_path))
    log_path = spec_path.with_suffix(".log")
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
            env=os.environ | ({SUBMITTED_BY_ENV: submitted_by} if submitted_by else {}),
        )
    launched = LocalRun(command=command, log_path=log_path, pid=process.pid)
    state = LocalRunState(launched)
    with _LOCAL_RUNS_LOCK:
        _LOCAL_RUNS.append(state)
    # A waiting thread per child: the dashboard is the parent, and an exited child nobody waits
    # for stays a zombie until the dashboard exits. Daemon: it never holds the server up.
    threading.Thread(target=_reap, args=(process, state), name=f"reap-{process.pid}",
                     daemon=True).start()
    return launched


@dataclass
class LocalRunState:
    """A local run this dashboard process started, and how it ended once it has."""

    run: LocalRun
    started_at: float = field(default_factory=time.time)
    returncode: int | None = None
    """``None`` while running; the exit code, or ``-N`` when signal N killed it."""

    @property
    def outcome(self) -> str:
        return describe_exit(self.returncode)


_LOCAL_RUNS: list[LocalRunState] = []
_LOCAL_RUNS_LOCK = threading.Lock()


def describe_exit(returncode: int | None) -> str:
    """How a ``robustlab run`` ended, in words (its exit codes are the CLI's)."""
    if returncode is None:
        return "running"
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    meaning = {0: "succeeded", 1: "a run failed", 2: "bad input"}.get(returncode)
    if meaning is None and returncode > 128:
        try:
            meaning = f"stopped by {signal.Signals(returncode - 128).name}"
        except ValueError:
            meaning = None
    return f"exited {returncode}" + (f" ({meaning})" if meaning else "")


def _reap(process: subprocess.Popen[bytes], state: LocalRunState) -> None:
    """Wait for the child (so it never lingers as a zombie) and record how it ended."""
    state.returncode = process.wait()


def local_runs() -> list[LocalRunState]:
    """The local runs this process started, newest first, each running or with its outcome."""
    with _LOCAL_RUNS_LOCK:
        return sorted(_LOCAL_RUNS, key=lambda state: state.started_at, reverse=True)


class QueueUnavailable(RuntimeError):
    """The queue cannot take the spec now; the message says why (no module, broker down)."""


def queue_module() -> Any:
    """``service.queue.submission`` (which holds ``submit`` and what it needs from
    ``service.queue.app``) if it can be imported; raises ``QueueUnavailable`` otherwise."""
    try:
        return importlib.import_module("service.queue.submission")
    except ModuleNotFoundError as exc:
        if exc.name not in ("service.queue", "service.queue.submission", "celery", "kombu"):
            raise
        raise QueueUnavailable(f"queue not available: {exc.name} is not installed") from exc


def submit_to_queue(loaded: LoadedSpec, submitted_by: str | None = None) -> Submission:
    """Record and enqueue every run of the spec through ``service.queue.submission.submit``.

    The broker comes from the settings (``ROBUSTLAB_BROKER_URL``); when it does not answer,
    nothing is recorded and ``QueueUnavailable`` says so.
    """
    queue = queue_module()
    try:
        with submitting_as(submitted_by):  # the runs record the logged-in user
            return queue.submit(loaded)
    except queue.BrokerUnavailable as exc:
        raise QueueUnavailable(f"queue not available: {exc}") from exc


def no_worker_warning(queue_name: str) -> str | None:
    """What to tell the user when no worker consumes ``queue_name`` (asked with a short
    timeout through ``service.queue.app.queue_consumers``); ``None`` when one does."""
    queue = queue_module()
    try:
        if queue.queue_consumers(queue_name):
            return None
    except queue.BrokerUnavailable as exc:
        return f"could not ask the workers whether one consumes '{queue_name}': {exc}"
    return (f"No worker consumes the queue '{queue_name}': the runs wait until one starts. "
            f"Start one with `robustlab worker --queues {queue_name}`.")
