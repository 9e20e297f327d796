"""E3 (Table 4, Figure 2) on real binary MNIST: the paper's pattern, exactness, and the records.

The 10,000 real digits of the ``mnist_data_dir`` fixture hold about 1,550 training and 390 test
fives and sevens. The experiment runs once per module at the paper's settings (100 full-batch
epochs, eps 0.2) with three values of k for Fig. 2(c); the science functions are also checked
directly against closed forms (Pearson correlation, the exact worst case reached by PGD).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib import colormaps
from PIL import Image

from contract.records import Cancelled, EvaluationRecord, MemoryReporter
from contract.specs.data import DatasetConfig
from contract.specs.kinds import LinearFeaturesSpec
from workers.science.attacks import exact_linear_attack, pgd
from workers.science.context import RunContext
from workers.science.datasets import load_dataset
from workers.science.evaluate import unpack_correct
from workers.science.experiments import get_experiment
from workers.science.experiments.linear_features import CORRELATION_FIGURE, TOPK_FIGURE
from workers.science.linear_features import (
    DIVERGING_CMAP,
    LabelledData,
    LinearWeights,
    correct_under_attack,
    labelled_data,
    pixel_label_correlation,
    top_pixels,
    train_linear,
    weight_image,
)
from workers.science.losses import correct
from workers.science.models import LinearClassifier, build_model

EPS = 0.2
TOPK = (10, 100, 784)
CPU = torch.device("cpu")


def _spec(**fields: object) -> LinearFeaturesSpec:
    return LinearFeaturesSpec.model_validate(
        {"name": "e3_test", "kind": "linear_features", "eps": EPS, "topk": list(TOPK), **fields}
    )


def _context(tmp: Path, data_dir: Path, reporter: MemoryReporter) -> RunContext:
    return RunContext(run_id="e3", run_dir=tmp, device=CPU, reporter=reporter, data_dir=data_dir)


@pytest.fixture(scope="module")
def e3(mnist_data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> MemoryReporter:
    """One E3 run at the paper's settings, everything it reported."""
    reporter = MemoryReporter()
    get_experiment("linear_features")(
        _spec(), _context(tmp_path_factory.mktemp("e3"), mnist_data_dir, reporter)
    )
    return reporter


@pytest.fixture(scope="module")
def splits(mnist_data_dir: Path) -> tuple[LabelledData, LabelledData]:
    cfg = DatasetConfig(name="binary_mnist")
    return (labelled_data(load_dataset(cfg, mnist_data_dir, train=True), CPU),
            labelled_data(load_dataset(cfg, mnist_data_dir, train=False), CPU))


def _row(reporter: MemoryReporter, *, split: str, train_eps: float, eval_eps: float,
         variant: str = "") -> EvaluationRecord:
    found = [r for r in reporter.evaluations.values()
             if r.split == split and r.train_eps == train_eps and r.eval_eps == eval_eps
             and r.variant == variant]
    assert len(found) == 1, (split, train_eps, eval_eps, variant, found)
    return found[0]


def _bits(row: EvaluationRecord) -> np.ndarray:
    assert row.per_example is not None
    return unpack_correct(row.per_example, row.n)


def _metric(reporter: MemoryReporter, name: str, **tags: float) -> float:
    found = [m.value for m in reporter.metrics.values()
             if m.name == name and all(m.tags.get(k) == v for k, v in tags.items())]
    assert len(found) == 1, (name, tags, found)
    return found[0]


# --------------------------------------------------------------------------- Table 4


def test_table4_pattern(e3: MemoryReporter) -> None:
    """Adversarial training costs standard accuracy, buys far more robustness, shrinks ||w||_1."""
    for split in ("train", "test"):
        std = {eps: _row(e3, split=split, train_eps=0.0, eval_eps=eps).accuracy for eps in (0, EPS)}
        adv = {eps: _row(e3, split=split, train_eps=EPS, eval_eps=eps).accuracy for eps in (0, EPS)}
        assert std[0] > adv[0] > 0.9, (split, std, adv)
        assert adv[EPS] - std[EPS] > 0.2, (split, std, adv)
        assert std[0] > std[EPS] and adv[0] > adv[EPS]
    standard_l1 = _metric(e3, "weight_l1", train_eps=0.0)
    robust_l1 = _metric(e3, "weight_l1", train_eps=EPS)
    assert robust_l1 < 0.5 * standard_l1, (standard_l1, robust_l1)


def test_table4_rows_describe_the_threat_model_and_carry_their_examples(e3: MemoryReporter) -> None:
    table4 = [r for r in e3.evaluations.values() if r.variant == ""]
    assert len(table4) == 8  # 2 models x 2 splits x {clean, exact}
    for row in table4:
        assert (row.model, row.dataset) == ("linear", "binary_mnist")
        assert row.train_norm == ("linf" if row.train_eps > 0 else None)
        if row.eval_eps == 0:
            assert (row.attack, row.eval_norm) == ("none", None)
        else:
            assert (row.attack, row.eval_norm, row.eval_eps) == ("exact_linear", "linf", EPS)
        assert _bits(row).mean() == pytest.approx(row.accuracy)
    for train_eps in (0.0, EPS):
        clean = _bits(_row(e3, split="test", train_eps=train_eps, eval_eps=0.0))
        attacked = _bits(_row(e3, split="test", train_eps=train_eps, eval_eps=EPS))
        assert not (attacked & ~clean).any(), "robust but wrong on the clean input"


def test_training_loss_falls_and_progress_reaches_the_end(e3: MemoryReporter) -> None:
    for train_eps in (0.0, EPS):
        losses = sorted((m.step, m.value) for m in e3.metrics.values()
                        if m.name == "train_loss" and m.tags == {"train_eps": train_eps})
        assert [step for step, _ in losses] == list(range(1, 101))
        values = [loss for _, loss in losses]
        assert values[-1] < values[0]
        if train_eps == 0:  # smooth and convex, step below 2 / Lipschitz: GD never goes up
            assert all(b <= a for a, b in zip(values, values[1:], strict=False))
    assert e3.last_progress is not None
    done, total, _ = e3.last_progress
    assert done == total == 100 * (2 + len(TOPK))
    assert len(e3.facts["data_hash"]) == 64


# --------------------------------------------------------------------------- Figure 2


def test_robust_model_leaves_weakly_correlated_pixels_unused(e3: MemoryReporter) -> None:
    """Fig. 2(b): below the correlation threshold the robust model has (almost) no weight."""
    threshold = _spec().correlation_threshold
    peak = {eps: _metric(e3, "low_correlation_peak_ratio", train_eps=eps, threshold=threshold)
            for eps in (0.0, EPS)}
    mass = {eps: _metric(e3, "low_correlation_weight_fraction", train_eps=eps,
                         threshold=threshold) for eps in (0.0, EPS)}
    assert peak[EPS] < 0.05 < 0.25 < peak[0.0], peak
    assert mass[EPS] < 0.5 * mass[0.0], mass
    assert _metric(e3, "low_correlation_pixels", threshold=threshold) > 300


def test_topk_trades_robustness_for_accuracy(e3: MemoryReporter) -> None:
    """Fig. 2(c): more weakly correlated pixels raise standard and lower adversarial accuracy;
    the top pixels alone come close to adversarial training."""
    standard = {k: _row(e3, split="test", train_eps=0.0, eval_eps=0.0, variant=f"topk={k}").accuracy
                for k in TOPK}
    robust = {k: _row(e3, split="test", train_eps=0.0, eval_eps=EPS, variant=f"topk={k}").accuracy
              for k in TOPK}
    assert standard[10] < standard[100] <= standard[784], standard
    assert robust[10] > robust[100] > robust[784], robust
    assert robust[10] - robust[784] > 0.2, robust
    adversarial_training = _row(e3, split="test", train_eps=EPS, eval_eps=EPS).accuracy
    assert robust[10] > adversarial_training - 0.05, (robust, adversarial_training)


def test_topk_over_every_pixel_is_standard_training(e3: MemoryReporter) -> None:
    """k = 784 masks nothing, so it must reproduce standard training example by example."""
    for eval_eps in (0.0, EPS):
        everything = _row(e3, split="test", train_eps=0.0, eval_eps=eval_eps, variant="topk=784")
        standard = _row(e3, split="test", train_eps=0.0, eval_eps=eval_eps)
        assert np.array_equal(_bits(everything), _bits(standard))
        assert everything.details["weight_l1"] == pytest.approx(standard.details["weight_l1"])


def test_every_picture_is_a_png(e3: MemoryReporter) -> None:
    expected = {"e3_weights_standard.png": "weights", "e3_weights_adversarial.png": "weights",
                CORRELATION_FIGURE: "figure", TOPK_FIGURE: "figure"}
    assert {name: a.kind for name, a in e3.artifacts.items()} == expected
    for artifact in e3.artifacts.values():
        assert artifact.media_type == "image/png"
        with Image.open(io.BytesIO(artifact.data)) as image:
            assert image.format == "PNG"
            assert min(image.size) >= 200
            image.verify()
    weights = {a.metadata["train_eps"]: a.metadata for a in e3.artifacts.values()
               if a.kind == "weights"}
    assert weights[0.0]["train_norm"] is None and weights[EPS]["train_norm"] == "linf"


def _colour_map_values(png: bytes) -> np.ndarray:
    """The value in [-1, 1] each pixel shows on the diverging map; NaN where it is no map colour
    (background, text, axes)."""
    rgb = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).reshape(-1, 3)
    colours, pixel_colour = np.unique(rgb, axis=0, return_inverse=True)  # (U, 3), (P,)
    palette = colormaps[DIVERGING_CMAP](np.linspace(0, 1, 256))[:, :3] * 255  # (256, 3)
    distance = np.linalg.norm(colours[:, None, :] - palette[None, :, :], axis=2)  # (U, 256)
    values = np.where(distance.min(axis=1) < 8, np.linspace(-1, 1, 256)[distance.argmin(axis=1)],
                      np.nan)  # (U,)
    return values[pixel_colour.reshape(-1)]


def _weights_half_and_half(upper: float, lower: float) -> LinearWeights:
    w = torch.full((784,), upper, dtype=torch.float64)
    w[392:] = lower
    return LinearWeights(w, torch.zeros((), dtype=torch.float64))


def test_weight_image_uses_a_diverging_map_centred_at_zero() -> None:
    """w and -w get mirror colours of equal strength, and the map's ends are +-max|w|."""
    balanced = _colour_map_values(weight_image(_weights_half_and_half(1.0, -1.0), "w"))
    red, blue = int(np.sum(balanced > 0.8)), int(np.sum(balanced < -0.8))
    assert min(red, blue) > 5000 and abs(red - blue) < 0.1 * red, (red, blue)

    lopsided = _colour_map_values(weight_image(_weights_half_and_half(3.0, -1.0), "w"))
    third = np.sum((lopsided > -0.45) & (lopsided < -0.2))  # -1 on a map from -3 to 3
    assert third > 5000, third
    assert np.sum(lopsided < -0.8) < 0.1 * np.sum(lopsided > 0.8)


# --------------------------------------------------------------------------- the science directly


def test_correlation_is_pearsons_and_top_pixels_follow_its_magnitude(
        splits: tuple[LabelledData, LabelledData]) -> None:
    train, _ = splits
    correlation = pixel_label_correlation(train)
    x, y = train.x.numpy(), train.y.numpy().astype(float)
    varying = x.std(axis=0) > 0
    reference = np.array([np.corrcoef(x[:, i], y)[0, 1] for i in np.flatnonzero(varying)])
    np.testing.assert_allclose(correlation.numpy()[varying], reference, atol=1e-10)
    assert (correlation[~torch.from_numpy(varying)] == 0).all()
    mask = top_pixels(correlation, 50)
    assert int(mask.sum()) == 50
    assert correlation[mask].abs().min() >= correlation[~mask].abs().max()
    assert (correlation[mask] < 0).any() and (correlation[mask] > 0).any(), "both digits' pixels"


def test_masked_training_never_moves_the_other_weights(
        splits: tuple[LabelledData, LabelledData]) -> None:
    train, _ = splits
    mask = top_pixels(pixel_label_correlation(train), 20)
    weights = train_linear(train, epochs=5, lr=0.1, mask=mask)
    assert (weights.w[~mask] == 0).all() and (weights.w[mask] != 0).all()


def test_pgd_on_the_learned_model_reaches_the_exact_worst_case(
        splits: tuple[LabelledData, LabelledData]) -> None:
    """Sign steps of PGD end in the exact l_inf corner, so both agree on every test example."""
    train, test = splits
    weights = train_linear(train, epochs=100, lr=0.1)
    model = build_model("linear", 2)
    assert isinstance(model, LinearClassifier)
    with torch.no_grad():
        model.weight.copy_(weights.w.view(1, -1))
        model.bias.copy_(weights.b.view(1))
    images = test.x.float().view(-1, 1, 28, 28)
    x_adv = pgd(model, images, test.y, norm="linf", eps=EPS, step_size=EPS / 4, steps=20,
                generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        reached = test.y.double() * model(x_adv).view(-1).double()
    exact = exact_linear_attack((weights.w, weights.b), test.x, test.y, norm="linf", eps=EPS).margin
    torch.testing.assert_close(reached, exact, atol=1e-4, rtol=1e-4)
    with torch.no_grad():
        pgd_correct = correct(model(x_adv), test.y)
    assert torch.equal(pgd_correct, correct_under_attack(weights, test, EPS))


def test_cancelling_stops_before_anything_is_reported(mnist_data_dir: Path, tmp_path: Path) -> None:
    reporter = MemoryReporter()
    reporter.stop = True
    with pytest.raises(Cancelled):
        get_experiment("linear_features")(_spec(), _context(tmp_path, mnist_data_dir, reporter))
    assert not reporter.evaluations and not reporter.artifacts
