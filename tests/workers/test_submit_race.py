"""Racing submits of one spec (issue 19): eight ``robustlab submit`` processes at once record
one queued run per cell, and every one of them prints that run's id.

Real processes, real Redis (a queue of the test's own, which no worker consumes and which is
deleted afterwards), SQLite and PostgreSQL. The partial unique index ``ix_runs_active_cell``
decides who records a cell, not a check-then-insert.

Eight processes started together still reach the database one after the other (each takes
seconds to start on two shared cores), and the check-then-insert of old recorded 2 runs, not
16, without a race. So each caller waits, after it saw no run of the spec and before it
records, until one common instant (a ``sitecustomize`` hook on its ``PYTHONPATH``): then every
caller records at once, as on a loaded server. With that hook the code before the index
recorded all 16.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import redis

from service.store import migrate
from service.store.repository import Store
from tests.workers.conftest import queue_env
from tests.workers.helpers import ROBUSTLAB, TEST_REDIS, queue_length, theory_spec

pytestmark = [pytest.mark.redis, pytest.mark.slow]

CALLERS = 8
MEET_AFTER_S = 15.0
"""When the callers record, counted from their start: after all of them looked."""

HOOK = """\
import os, time
import service.recording as recording

_meet_at = float(os.environ["ROBUSTLAB_TEST_MEET_AT"])
_triage = recording.triage


def _triage_then_wait(*args, **kwargs):
    result = _triage(*args, **kwargs)
    time.sleep(max(0.0, _meet_at - time.time()))
    return result


recording.triage = _triage_then_wait
"""
"""Makes the callers' read-then-record windows overlap (``service.recording.record`` calls
``triage`` between reading the runs and recording them)."""


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres",
                                                           marks=pytest.mark.postgres)])
def test_eight_concurrent_submits_record_one_run_per_cell(
        backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    url = request.getfixturevalue(f"{backend}_url")
    migrate.upgrade(url)
    queue = f"race-{uuid.uuid4().hex[:10]}"
    spec = tmp_path / "race.yaml"
    spec.write_text(theory_spec("race", seeds=2))
    env = queue_env(url, TEST_REDIS, tmp_path, tmp_path)
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(HOOK)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(hook), env.get("PYTHONPATH")]))
    env["ROBUSTLAB_TEST_MEET_AT"] = str(time.time() + MEET_AFTER_S)
    callers = [subprocess.Popen([ROBUSTLAB, "submit", str(spec), "--queue", queue], env=env,
                                cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True) for _ in range(CALLERS)]
    try:
        outputs = [caller.communicate(timeout=180) for caller in callers]
        store = Store(url)
        try:
            runs = store.list_runs(experiment="race")
        finally:
            store.close()
        queued = queue_length(TEST_REDIS, queue)
    finally:
        for caller in callers:
            if caller.poll() is None:
                caller.kill()
                caller.wait()
        client = redis.Redis.from_url(TEST_REDIS)
        client.delete(queue)
        client.close()

    assert [caller.returncode for caller in callers] == [0] * CALLERS, outputs
    assert sorted(run.cell for run in runs) == [0, 1], "one run per cell, whatever the race"
    assert {run.status for run in runs} == {"queued"}
    ids = sorted(run.id for run in runs)
    for stdout, stderr in outputs:  # every caller names the run that now holds each cell
        assert sorted(line.split()[0] for line in stdout.splitlines()) == ids, (stdout, stderr)
        assert "Traceback" not in stderr
    counts = [re.search(r"race: (\d+) run\(s\) queued", stderr) for _, stderr in outputs]
    assert sum(int(found.group(1)) for found in counts if found) == 2, outputs
    assert queued == 2, "one message per recorded run, none for the callers told it existed"
