"""A bad image found inside a DataLoader worker process is refused in the same one line as in
the main process (issue 19), not as torch's "Caught RefusedData in DataLoader worker process
0." with the worker's traceback."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.utils.data import DataLoader

from contract.specs.data import DatasetConfig
from tests.data.hostile import make_corpus
from workers.science.datasets.image_folder import LabelledImageFolder, _transform
from workers.science.datasets.limits import RefusedData
from workers.science.loader_errors import failure_line, worker_error
from workers.science.training.loader import WORKER_START


def _folder_with_a_truncated_image(root: Path) -> tuple[LabelledImageFolder, int]:
    make_corpus.image_folder(root)
    whole = make_corpus.png_bytes(64)  # its header survives: "image file is truncated"
    (root / "train" / "b" / "zz.png").write_bytes(whole[:len(whole) // 2])
    folder = LabelledImageFolder(root / "train", ["a", "b"], _transform_of(), (3, 8, 8))
    bad = next(i for i, (path, _) in enumerate(folder.samples) if path.endswith("zz.png"))
    return folder, bad


def _transform_of() -> Callable[[Any], torch.Tensor]:
    """The transform ``image_folder.load`` gives a grey 8x8 folder read lazily."""
    return _transform(DatasetConfig(name="image_folder", root="x"), (8, 8), augment=False)


def test_a_refusal_in_a_loader_worker_is_the_same_line_as_in_the_main_process(
        tmp_path: Path) -> None:
    folder, bad = _folder_with_a_truncated_image(tmp_path / "folder")
    with pytest.raises(RefusedData) as in_main:
        folder[bad]
    expected = failure_line(in_main.value)
    assert expected.startswith("RefusedData: ") and "zz.png is not a readable image" in expected

    loader = DataLoader(folder, batch_size=len(folder), num_workers=1,
                        multiprocessing_context=WORKER_START)
    with pytest.raises(Exception) as in_worker:  # noqa: PT011  torch rebuilds the type it can
        next(iter(loader))
    assert "in DataLoader worker process" in str(in_worker.value)  # wrapped, as torch does
    assert worker_error(in_worker.value) == ("RefusedData", expected.removeprefix("RefusedData: "))
    assert failure_line(in_worker.value) == expected
    assert "\n" not in failure_line(in_worker.value)


def test_other_errors_keep_their_own_line() -> None:
    assert failure_line(ValueError("bad value")) == "ValueError: bad value"
    wrapped = RuntimeError("Caught KeyError in DataLoader worker process 3.\nOriginal Traceback "
                           "(most recent call last):\n  File \"x.py\", line 1, in f\n"
                           "KeyError: 'label'")
    assert failure_line(wrapped) == "KeyError: 'label'"


def test_a_run_refused_in_a_loader_worker_fails_with_the_refusal_line(
        sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Through ``execute_run``: the stored error's first line is the refusal itself."""
    from contract.specs.loading import load_spec_text
    from service import runner
    from service.recording import record
    from service.settings import Settings
    from service.store import migrate
    from service.store.repository import Store
    from tests.workers.helpers import theory_spec

    folder, bad = _folder_with_a_truncated_image(tmp_path / "folder")
    with pytest.raises(RefusedData) as in_main:
        folder[bad]

    def reads_in_a_worker(_spec: object, _ctx: object) -> None:
        loader = DataLoader(folder, batch_size=len(folder), num_workers=1,
                            multiprocessing_context=WORKER_START)
        next(iter(loader))

    monkeypatch.setattr(runner, "get_experiment", lambda kind: reads_in_a_worker)
    migrate.upgrade(sqlite_url)
    store = Store(sqlite_url)
    try:
        (run,) = record(load_spec_text(theory_spec("worker_refusal")), store).runs
        settings = Settings(database_url=sqlite_url, runs_dir=tmp_path / "runs",
                            artifact_dir=tmp_path / "artifacts", data_dir=tmp_path / "data")
        finished = runner.execute_run(run.id, store, settings=settings)
    finally:
        store.close()
    assert finished.status == "failed"
    assert (finished.error or "").splitlines()[0] == failure_line(in_main.value)
