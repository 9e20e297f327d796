"""The shipped specs: every one validates cell by cell, the paper's specs say what they reproduce
and carry the paper's numbers, and the E2 specs for CIFAR-10 and Restricted ImageNet run end to
end on small files written in those datasets' real on-disk formats.

The end-to-end runs shrink a spec only through ``--set`` overrides (subsets, one epoch, one PGD
step), as a user would; each cell then goes through the ``train`` experiment exactly as
``robustlab run`` would call it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from contract.records import EvaluationRecord, MemoryReporter
from contract.specs.attacks import PGDAttack
from contract.specs.kinds import LinearFeaturesSpec, TrainSpec
from contract.specs.loading import SpecError, load_spec_file
from contract.specs.sweep import Cell, expand
from tests.science.test_datasets import _write_cifar, _write_imagenet
from workers.science.checkpoints import load_model
from workers.science.context import RunContext
from workers.science.evaluate import unpack_correct
from workers.science.experiments import get_experiment

REPO = Path(__file__).resolve().parents[2]
SHIPPED = sorted((REPO / "specs").rglob("*.yaml"))
PAPER = sorted((REPO / "specs" / "paper").glob("*.yaml"))
E2 = {
    "mnist": REPO / "specs/paper/e2_fig1_mnist.yaml",
    "cifar10": REPO / "specs/paper/e2_fig1_cifar10.yaml",
    "restricted_imagenet": REPO / "specs/paper/e2_fig1_restricted_imagenet.yaml",
}
E3_TABLE4 = REPO / "specs/paper/e3_table4_binary_mnist.yaml"
E3_FIG2 = REPO / "specs/paper/e3_fig2_linear_features.yaml"

TABLE2 = {
    "mnist": {"linf": 0.3, "l2": 1.5},
    "cifar10": {"linf": 4 / 255, "l2": 80 / 255},
    "restricted_imagenet": {"linf": 0.005, "l2": 1.0},
}
"""The paper's Table 2: eps of adversarial training and evaluation (CIFAR-10 on the 0-1 scale)."""
ARCH = {"mnist": "mnist_cnn", "cifar10": "cifar_resnet", "restricted_imagenet": "resnet50"}


def _ids(paths: Sequence[Path]) -> list[str]:
    return [str(path.relative_to(REPO)) for path in paths]


# --------------------------------------------------------------------------- every spec


@pytest.mark.parametrize("path", SHIPPED, ids=_ids(SHIPPED))
def test_every_sweep_cell_of_every_spec_validates(path: Path) -> None:
    cells = expand(load_spec_file(path).spec)
    assert cells and all(not cell.spec.sweep for cell in cells)


@pytest.mark.parametrize("path", PAPER, ids=_ids(PAPER))
def test_paper_specs_say_what_they_reproduce(path: Path) -> None:
    spec = load_spec_file(path).spec
    assert spec.name == path.stem, "the experiment name is the file name"
    assert "Tsipras" in spec.description or "paper" in spec.description.lower()


# --------------------------------------------------------------------------- E2: Figure 1


def _train_spec(cell: Cell) -> TrainSpec:
    assert isinstance(cell.spec, TrainSpec)
    return cell.spec


def _adversaries(spec: TrainSpec) -> list[tuple[str, float]]:
    return [(_train_spec(cell).adversary.norm, _train_spec(cell).adversary.eps)
            for cell in expand(spec)]


@pytest.mark.parametrize("dataset", list(E2))
def test_e2_sweeps_eps_train_from_standard_training_up_to_table2(dataset: str) -> None:
    spec = load_spec_file(E2[dataset]).spec
    assert isinstance(spec, TrainSpec)
    assert (spec.dataset.name, spec.model.arch) == (dataset, ARCH[dataset])
    adversaries = _adversaries(spec)
    assert len(set(adversaries)) == len(adversaries), "no model trained twice"
    assert sum(eps == 0 for _, eps in adversaries) == 1, "one standard model"
    for norm, table2 in TABLE2[dataset].items():
        radii = [eps for n, eps in adversaries if n == norm and eps > 0]
        assert len(radii) >= 3 and radii == sorted(radii), (norm, radii)
        assert radii[-1] == pytest.approx(table2)
    evaluated = {a.norm: a.eps for a in spec.evaluation.attacks if isinstance(a, PGDAttack)}
    assert evaluated == pytest.approx(TABLE2[dataset])


def test_e2_mnist_uses_the_mnist_challenge_attacks() -> None:
    """Madry et al.: 40 steps of 0.01 to train at l_inf, 100 steps to evaluate."""
    spec = load_spec_file(E2["mnist"]).spec
    assert isinstance(spec, TrainSpec)
    for cell in expand(spec):
        adversary = _train_spec(cell).adversary
        if adversary.eps > 0:
            assert adversary.steps == 40
            if adversary.norm == "linf":
                assert adversary.resolved_step_size == 0.01
    assert {a.steps for a in spec.evaluation.attacks if isinstance(a, PGDAttack)} == {100}


def _shrunk_cells(path: Path, pick: Callable[[list[dict[str, Any]]], list[dict[str, Any]]],
                  overrides: Sequence[str]) -> list[Cell]:
    """The spec's own sweep cells chosen by ``pick``, one PGD step each, shrunk by ``--set``.

    Only the spec's PGD attacks run (one step each): its AutoAttack entries are tested in
    tests/science, and on a ResNet-50 on the CPU they alone would take minutes."""
    full = load_spec_file(path).spec
    blocks = [cell.params["adversary"] for cell in expand(full)]
    chosen = [{**block, "steps": 1} for block in pick(blocks)]
    attacks = [{**attack.model_dump(mode="json", exclude_none=True), "steps": 1}
               for attack in full.evaluation.attacks if attack.kind == "pgd"]
    spec = load_spec_file(path, overrides=[
        *overrides, "training.epochs=1", "evaluation.checks=false", "checkpoint_every=1",
        f"evaluation.attacks={json.dumps(attacks)}",
        f"sweep.adversary={json.dumps(chosen)}",
    ]).spec
    return expand(spec)


def _run_cells(cells: list[Cell], data_dir: Path, tmp_path: Path) -> list[MemoryReporter]:
    reporters = []
    for cell in cells:
        reporter = MemoryReporter()
        context = RunContext(run_id=f"cell{cell.index}", run_dir=tmp_path / f"cell{cell.index}",
                             device=torch.device("cpu"), reporter=reporter, data_dir=data_dir)
        get_experiment("train")(cell.spec, context)
        reporters.append(reporter)
    return reporters


def _bits(row: EvaluationRecord) -> np.ndarray:
    assert row.per_example is not None
    return unpack_correct(row.per_example, row.n)


def _check_figure1_point(cell: Cell, reporter: MemoryReporter, dataset: str, n_test: int) -> None:
    """One point of Figure 1: clean and PGD rows at both Table 2 radii, a loadable checkpoint."""
    spec = _train_spec(cell)
    rows = list(reporter.evaluations.values())
    assert {(r.model, r.dataset, r.train_norm, r.train_eps, r.n) for r in rows} == {
        (ARCH[dataset], dataset, spec.adversary.norm, spec.adversary.eps, n_test)}
    clean = [r for r in rows if r.attack == "none"]
    assert len(clean) == 1
    for norm, eps in TABLE2[dataset].items():
        attacked = [r for r in rows if r.attack == "pgd" and r.eval_norm == norm]
        assert len(attacked) == 1 and attacked[0].eval_eps == pytest.approx(eps)
        assert not (_bits(attacked[0]) & ~_bits(clean[0])).any(), "robust yet wrong when clean"
    final = [c for c in reporter.checkpoints if c.final]
    assert len(final) == 1 and final[0].epoch == 1
    model, meta = load_model(final[0].path, torch.device("cpu"))
    assert (meta["arch"], meta["train_eps"]) == (ARCH[dataset], spec.adversary.eps)
    assert sum(p.numel() for p in model.parameters()) > 0
    assert len(reporter.facts["data_hash"]) == 64


def _standard_and_table2(norm: str) -> Callable[[list[dict[str, Any]]], list[dict[str, Any]]]:
    """Pick the standard model and the largest radius of ``norm`` (Table 2's)."""
    def pick(blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
        standard = next(b for b in blocks if b["eps"] == 0)
        return [standard, max((b for b in blocks if b["norm"] == norm), key=lambda b: b["eps"])]
    return pick


def test_e2_cifar10_runs_end_to_end_on_cifar_pickles(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    _write_cifar(data_dir / "cifar10", per_batch=2, n_test=4)
    cells = _shrunk_cells(E2["cifar10"], _standard_and_table2("linf"), [
        "dataset.train_subset=4", "dataset.test_subset=2", "training.batch_size=4",
        "evaluation.batch_size=2",
    ])
    assert [_train_spec(c).adversary.eps for c in cells] == [0, pytest.approx(4 / 255)]
    for cell, reporter in zip(cells, _run_cells(cells, data_dir, tmp_path), strict=True):
        _check_figure1_point(cell, reporter, "cifar10", n_test=2)


@pytest.mark.slow
def test_e2_restricted_imagenet_runs_end_to_end_on_a_jpeg_tree(tmp_path: Path) -> None:
    """ResNet-50 at 224 x 224 on the CPU: one cell, the l_2 model of Table 2."""
    data_dir = tmp_path / "data"
    _write_imagenet(data_dir / "restricted_imagenet")
    table2_l2 = _standard_and_table2("l2")
    cells = _shrunk_cells(E2["restricted_imagenet"], lambda blocks: table2_l2(blocks)[1:], [
        "dataset.train_subset=1", "dataset.test_subset=1", "training.batch_size=1",
        "evaluation.batch_size=1",
    ])
    adversaries = [_train_spec(cell).adversary for cell in cells]
    assert [(a.norm, a.eps) for a in adversaries] == [("l2", 1.0)]
    (reporter,) = _run_cells(cells, data_dir, tmp_path)
    _check_figure1_point(cells[0], reporter, "restricted_imagenet", n_test=1)


# --------------------------------------------------------------------------- E3: Table 4, Figure 2


def test_e3_specs_use_the_paper_settings() -> None:
    table4, fig2 = (load_spec_file(path).spec for path in (E3_TABLE4, E3_FIG2))
    for spec in (table4, fig2):
        assert isinstance(spec, LinearFeaturesSpec)
        assert (spec.dataset.name, spec.epochs, spec.eps) == ("binary_mnist", 100, 0.2)
        assert spec.dataset.train_subset is None and spec.dataset.test_subset is None
    assert isinstance(table4, LinearFeaturesSpec) and isinstance(fig2, LinearFeaturesSpec)
    assert table4.topk == []
    assert fig2.topk == sorted(fig2.topk) and fig2.topk[-1] == 784 and fig2.topk[0] <= 10


@pytest.mark.parametrize(("override", "message"), [
    ("dataset.name=mnist", "binary_mnist"),
    ("dataset.augment=true", "augment"),
    ("topk=[10, 10]", "repeated"),
    ("topk=[785]", "784"),
    ("eps=0", "> 0"),
    ("correlation_threshold=1", "< 1"),
])
def test_linear_features_specs_refuse_what_the_experiment_cannot_do(override: str,
                                                                    message: str) -> None:
    with pytest.raises(SpecError) as caught:
        load_spec_file(E3_FIG2, overrides=[override])
    (problem,) = caught.value.problems
    assert message in problem.message, problem
    assert f"--set {override}" in str(problem)
