"""The report's provenance prints the command that records each run's spec again, and the
machines the runs ran on; specs keep their ``--set`` overrides (migration 0007)."""

from __future__ import annotations

import io
import shlex
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import sqlalchemy as sa

from contract.records import PER_EXAMPLE_KIND, ArtifactRecord
from contract.specs.loading import load_spec_file
from contract.status import RunStatus
from service.recording import plan_runs, record
from service.report.inputs import collect
from service.report.provenance import command_line, provenance_markdown
from service.store import migrate
from service.store.entities import SpecInfo
from service.store.repository import LocalStorage, Store
from tests.workers.helpers import theory_spec

OVERRIDES = ["n_test=300", "eps=[0.1,\n     0.2]", "sweep.seed=[0, 1]",
             "description=two  spaces stay"]
"""A flow list written over two lines (folded when printed) and a value whose own double
space must survive the printing: the command must record the very same spec."""


def test_the_printed_command_records_the_same_spec(database_url: str, tmp_path: Path) -> None:
    path = tmp_path / "theory spec.yaml"  # a space: the command must quote it
    path.write_text(theory_spec("provenance"))
    loaded = load_spec_file(path, OVERRIDES)
    migrate.upgrade(database_url)
    store = Store(database_url, storage=LocalStorage(tmp_path / "artifacts"))
    try:
        runs = record(loaded, store).runs
        assert len(runs) == 2
        store.mark_running(runs[0].id, host="lab-1", device="cpu", git_sha="abc",
                           package_versions={"torch": "2.15.0", "python": "3.11.7"})
        store.add_provenance(runs[0].id, machine="AMD EPYC, 2 cores, 1 torch thread(s); 24 GiB")
        specs = {spec.id: spec for spec in store.specs([runs[0].spec_id])}
        assert specs[runs[0].spec_id].overrides == OVERRIDES

        line = command_line(specs[runs[0].spec_id])
        words = shlex.split(line)
        assert words[:3] == ["robustlab", "run", str(path)]
        again = load_spec_file(words[2], [w for i, w in enumerate(words) if words[i - 1] == "--set"])
        assert plan_runs(again)[0] == runs[0].spec_id  # same spec, same hash, same cells
        assert again.spec.model_dump() == loaded.spec.model_dump()  # the unhashed prose too

        text = provenance_markdown([store.get_run(run.id) for run in runs], specs)
        assert line in text and f"2 run(s): `{runs[0].id}` `{runs[1].id}`" in text
        assert "| seed=0 |" in text and "| seed=1 |" in text  # what tells the runs apart
        assert ("- lab-1; cpu; AMD EPYC, 2 cores, 1 torch thread(s); 24 GiB; torch 2.15.0, "
                "python 3.11.7 (1 run)") in text
    finally:
        store.engine.dispose()


def test_a_spec_recorded_before_overrides_were_kept_gains_them(database_url: str,
                                                               tmp_path: Path) -> None:
    path = tmp_path / "theory.yaml"
    path.write_text(theory_spec("old"))
    loaded = load_spec_file(path, OVERRIDES)
    migrate.upgrade(database_url)
    store = Store(database_url, storage=LocalStorage(tmp_path / "artifacts"))
    try:
        spec_id = record(loaded, store).runs[0].spec_id
        with store.engine.begin() as connection:  # as migration 0007 leaves an older spec
            connection.execute(sa.text("UPDATE specs SET overrides = NULL"))
        old = store.specs([spec_id])[0]
        assert old.overrides is None
        assert "overrides not recorded" in command_line(old)

        record(loaded, store)  # the same spec again: its cells are pending, the spec gains them
        assert store.specs([spec_id])[0].overrides == OVERRIDES
        # the same spec written otherwise: the overrides first recorded stay
        other = ["n_test=300", "eps=[0.1, 0.2]", "sweep.seed=[0,1]", "description=two  spaces stay"]
        assert record(load_spec_file(path, other), store).spec_id == spec_id
        assert store.specs([spec_id])[0].overrides == OVERRIDES
    finally:
        store.engine.dispose()


def test_text_submitted_without_a_file_says_so() -> None:
    spec = SpecInfo(id="f" * 64, name="typed", kind="train", source_path=None, overrides=[],
                    created_at=datetime.now(UTC))
    assert command_line(spec).startswith("# typed: submitted as text")


def test_unreadable_per_image_values_are_left_out_not_fatal(tmp_path: Path) -> None:
    """A truncated file, a pickled object array and a 2-d array as per-image values: the
    report's inputs leave each out (the claim falls back to the means) and read the good one;
    nothing is unpickled."""
    url = f"sqlite:///{tmp_path / 'r.db'}"
    migrate.upgrade(url)
    store = Store(url, storage=LocalStorage(tmp_path / "artifacts"))
    path = tmp_path / "theory.yaml"
    path.write_text(theory_spec("per_image"))
    (run, *_) = record(load_spec_file(path), store).runs
    store.mark_running(run.id, host="h", device="cpu", git_sha=None, package_versions={})

    def npy(values: np.ndarray) -> bytes:
        buffer = io.BytesIO()
        np.save(buffer, values, allow_pickle=True)
        return buffer.getvalue()

    files = {"good.npy": npy(np.array([0.5, 0.25], dtype=np.float32)),
             "truncated.npy": npy(np.zeros(4, dtype=np.float32))[:40],
             "objects.npy": npy(np.array([{"a": 1}, "x"], dtype=object)),
             "square.npy": npy(np.zeros((2, 2), dtype=np.float32))}
    for name, data in files.items():
        store.add_artifact(run.id, ArtifactRecord(PER_EXAMPLE_KIND, name, data,
                                                  media_type="application/x-npy"))
    store.finish_run(run.id, RunStatus.SUCCEEDED)
    inputs = collect(store)
    assert {p.rsplit("/", 1)[-1]: v for p, v in inputs.per_image.items()} == {
        "good.npy": (0.5, 0.25)}
    store.close()
