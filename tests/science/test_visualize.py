"""E4-E6: large-eps examples, interpolations, loss gradients, their measures and pictures.

The pure functions are checked against closed forms on small synthetic tensors. The kind runs
end to end with tiny ``{train: ...}`` models (trained in the run, then resumed without
retraining) and with ``{checkpoint: ...}`` models.

The paper's claims are checked on real MNIST digits (fixture ``mnist_data_dir``, marked
slow: about 2 minutes on two CPU cores, most of it training): a robust ``mnist_cnn`` gets a
higher ``target_agreement`` (judged by an independent l_2-robust model) and a higher
``gradient_edge_alignment`` than a standard one. Measured with the fixture's settings for two
seed pairs (models 0 / judge 1, and 2 / 3) and two attacks (l_2 4, l_inf 0.3, 10 steps, 200
digits): target agreement 0.34-0.42 (standard) against 0.59-0.63 (robust); edge alignment
0.42 (standard) against 0.51-0.52 (robust). At this scale a *standard* judge does not separate
them (it agrees with 81-88% of either model's examples: transfer between standard models), and
neither does a standard model trained for one epoch only (its large-eps examples still look
like digits to the robust judge as often as the robust model's); see the fixture.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from pydantic import ValidationError
from torch import nn

from contract.records import PER_EXAMPLE_KIND, ArtifactRecord, Cancelled, MemoryReporter
from contract.specs.architecture import ModelConfig
from contract.specs.data import DatasetConfig
from contract.specs.kinds import TrainSpec
from contract.specs.training import AdversaryConfig, OptimizerConfig, TrainingConfig
from contract.specs.visualize import LargeEpsAttack, VisualizeSpec
from workers.science.context import RunContext
from workers.science.datasets import load_dataset
from workers.science.experiments import get_experiment
from workers.science.experiments.train import checkpoint_meta
from workers.science.models import build_model
from workers.science.training import seed_everything, train
from workers.science.visualize import (
    LARGE_EPS,
    default_large_eps_attacks,
    gradient_cells,
    gradient_edge_alignment,
    grid_png,
    image_cells,
    input_gradients,
    interpolate,
    large_eps_examples,
    normalize_gradient,
    pearson,
    sobel_magnitude,
    target_classes,
)

CPU = torch.device("cpu")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def decode_png(data: bytes) -> Image.Image:
    """Open PNG bytes, insisting on the signature and a clean decode."""
    assert data.startswith(PNG_MAGIC)
    Image.open(io.BytesIO(data)).verify()
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


# --------------------------------------------------------------------------- interpolation


def test_interpolation_ends_are_the_image_and_the_adversarial_example() -> None:
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(3, 1, 6, 6, generator=generator)
    x_adv = torch.rand(3, 1, 6, 6, generator=generator)
    strips = interpolate(x, x_adv, 5)  # (3, 5, 1, 6, 6)
    assert strips.shape == (3, 5, 1, 6, 6)
    assert torch.equal(strips[:, 0], x)
    assert torch.equal(strips[:, -1], x_adv)
    for i in range(5):  # point i lies i/4 of the way along the segment
        torch.testing.assert_close(strips[:, i], x + i / 4 * (x_adv - x))


def test_interpolation_needs_both_ends() -> None:
    with pytest.raises(ValueError, match="at least its two ends"):
        interpolate(torch.zeros(1, 1, 2, 2), torch.ones(1, 1, 2, 2), 1)


# --------------------------------------------------------------------------- gradients


def test_gradient_normalisation_clips_at_three_sigma_and_rescales_to_unit_interval() -> None:
    # 98 values of +-1 and two outliers +-10: mean 0, sigma = sqrt((98 + 200) / 100).
    values = torch.tensor([1.0, -1.0] * 49 + [10.0, -10.0]).view(1, 1, 10, 10)
    sigma = (298 / 100) ** 0.5
    normalized = normalize_gradient(values)
    assert normalized.min() == 0 and normalized.max() == 1  # the outliers are clipped
    expected_one = 0.5 + 1 / (2 * 3 * sigma)
    torch.testing.assert_close(normalized[values == 1], torch.full((49,), expected_one))
    torch.testing.assert_close(normalized[values == -1], torch.full((49,), 1 - expected_one))


def test_gradient_normalisation_is_per_image_scale_free_and_keeps_zero_at_the_middle() -> None:
    generator = torch.Generator().manual_seed(1)
    scales = torch.tensor([1e-6, 1.0, 5.0, 1e3]).view(4, 1, 1, 1)
    grad = torch.randn(4, 3, 8, 8, generator=generator) * scales
    grad[:, :, 0, 0] = 0
    normalized = normalize_gradient(grad)
    assert normalized.shape == grad.shape
    assert normalized.min() >= 0 and normalized.max() <= 1
    torch.testing.assert_close(normalized[1:], normalize_gradient(grad[1:] * 7))
    assert torch.all(normalized[:, :, 0, 0] == 0.5)
    assert torch.equal(normalize_gradient(torch.zeros(2, 1, 4, 4)), torch.full((2, 1, 4, 4), 0.5))


def test_sobel_magnitude_of_a_step_edge() -> None:
    x = torch.zeros(1, 3, 6, 8)
    x[..., 4:] = 1.0  # a vertical edge between columns 3 and 4
    magnitude = sobel_magnitude(x)  # (1, 6, 8)
    expected = torch.zeros(1, 6, 8)
    expected[..., 3:5] = 4.0  # 1 + 2 + 1 on each side of the edge, nothing at the borders
    torch.testing.assert_close(magnitude, expected)


def test_pearson_closed_forms() -> None:
    a = torch.tensor([[0.0, 1.0, 3.0, 7.0], [2.0, 2.0, 2.0, 2.0]])
    torch.testing.assert_close(pearson(a[:1], 2 * a[:1] + 3), torch.tensor([1.0]))
    torch.testing.assert_close(pearson(a[:1], -a[:1]), torch.tensor([-1.0]))
    assert pearson(a[1:], a[:1]).item() == 0  # a constant side has no correlation: 0
    centred = torch.tensor([[1.0, -1.0, 1.0, -1.0]])
    assert pearson(centred, torch.tensor([[1.0, 1.0, -1.0, -1.0]])).item() == 0  # orthogonal


def test_a_gradient_on_the_edges_aligns_perfectly_whatever_its_sign() -> None:
    x = torch.zeros(2, 1, 8, 8)
    x[:, :, 2:6, 2:6] = 1.0  # a square
    edges = sobel_magnitude(x).unsqueeze(1)  # (2, 1, 8, 8)
    coins = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    signs = torch.where(coins > 0.5, 1.0, -1.0)
    torch.testing.assert_close(gradient_edge_alignment(edges * signs, x), torch.ones(2))
    noise = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(3))
    assert torch.all(gradient_edge_alignment(noise, x) < 0.5)


def test_input_gradients_are_the_loss_gradient_and_leave_the_model_alone() -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    model.train()
    x = torch.rand(2, 1, 2, 2, generator=torch.Generator().manual_seed(4))
    y = torch.tensor([0, 2])
    grad = input_gradients(model, x, y)
    weight = model[1].weight.detach()  # (3, 4)
    probabilities = torch.softmax(model(x), dim=1).detach()  # (2, 3)
    expected = (probabilities - nn.functional.one_hot(y, 3)) @ weight  # d CE / d x, closed form
    torch.testing.assert_close(grad.flatten(1), expected)
    assert model.training
    assert all(p.grad is None and p.requires_grad for p in model.parameters())


# --------------------------------------------------------------------------- large eps


def test_targets_differ_from_the_true_class() -> None:
    y = torch.arange(10).repeat(20)
    assert torch.equal(target_classes(y, 10, rule="next"), (y + 1) % 10)
    generator = torch.Generator().manual_seed(5)
    random = target_classes(y, 10, rule="random", generator=generator)
    assert torch.all(random != y) and random.min() >= 0 and random.max() <= 9
    assert len(set(random.tolist())) == 10
    again = target_classes(y, 10, rule="random", generator=torch.Generator().manual_seed(5))
    assert torch.equal(random, again)
    binary = torch.tensor([-1, 1, 1])
    assert torch.equal(target_classes(binary, 2, rule="next"), -binary)


def test_default_attacks_are_table_3() -> None:
    assert LARGE_EPS["mnist"] == {"linf": 0.3, "l2": 4.0}
    assert LARGE_EPS["cifar10"] == {"linf": 32 / 255, "l2": 1200 / 255}
    assert LARGE_EPS["restricted_imagenet"] == {"linf": 0.25, "l2": 40.0}
    attacks = default_large_eps_attacks("fashion_mnist")
    assert [(a.norm, a.eps) for a in attacks] == [("linf", 0.3), ("l2", 4.0)]


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_large_eps_examples_stay_in_the_ball_and_reach_the_target(norm: str) -> None:
    # Class k's logit is 10 * pixel k: any class wins once its pixel is the brightest of four.
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 4, bias=False))
    with torch.no_grad():
        model[1].weight.copy_(10 * torch.eye(4, 16))
    x = torch.rand(8, 1, 4, 4, generator=torch.Generator().manual_seed(6)) * 0.4 + 0.3
    target = torch.arange(8) % 4
    attack = LargeEpsAttack(norm=norm, eps=3.0 if norm == "l2" else 0.25, steps=50)
    x_adv = large_eps_examples(model, x, target, attack)
    distance = (x_adv - x).flatten(1)
    size = distance.abs().amax(dim=1) if norm == "linf" else distance.norm(dim=1)
    assert torch.all(size <= attack.eps + 1e-5)
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    with torch.no_grad():
        assert torch.equal(model(x_adv).argmax(dim=1), target)


# --------------------------------------------------------------------------- pictures


def test_grids_are_png_images_of_the_right_shape() -> None:
    images = image_cells(torch.rand(3, 1, 28, 28))
    assert all(cell.shape == (28, 28, 3) for cell in images)
    image = decode_png(grid_png([images, images], row_titles=["a", "b"],
                                column_titles=["1", "2", "3"], title="t"))
    assert image.format == "PNG" and image.width > 3 * 28 and image.height > 2 * 28
    taller = decode_png(grid_png([images] * 4))
    assert taller.height > decode_png(grid_png([images])).height
    with pytest.raises(ValueError, match="same number"):
        grid_png([images, images[:2]])


def test_grey_gradients_use_a_diverging_map_blue_for_positive() -> None:
    grad = torch.zeros(1, 1, 3, 3)
    grad[0, 0, 0, 0], grad[0, 0, 2, 2] = 1.0, -1.0
    cell = gradient_cells(grad)[0]  # (3, 3, 3) RGB
    red, blue = cell[..., 0], cell[..., 2]
    assert blue[0, 0] > red[0, 0] and red[2, 2] > blue[2, 2]
    np.testing.assert_allclose(cell[1, 1], cell[1, 1].mean(), atol=0.05)  # zero: near white/grey
    colour = gradient_cells(torch.randn(2, 3, 5, 5))
    assert all(c.shape == (5, 5, 3) and c.min() >= 0 and c.max() <= 1 for c in colour)


# --------------------------------------------------------------------------- the kind, on MNIST

TRAIN_DIGITS = 2000
MEASURE_DIGITS = 200
STANDARD = AdversaryConfig(eps=0)
ROBUST = AdversaryConfig(norm="l2", eps=2.0, steps=2)
"""The robust models' training adversary; see ``trained_mnist_models`` for why l_2."""
ADAM = OptimizerConfig(name="adam", lr=1e-3, weight_decay=0)


def train_checkpoint(label: str, adversary: AdversaryConfig, *, seed: int, epochs: int,
                     data_dir: Path, root: Path) -> Path:
    """``mnist_cnn`` trained on the first ``TRAIN_DIGITS`` digits; its final checkpoint."""
    spec = TrainSpec(name=label, kind="train",
                     dataset=DatasetConfig(name="mnist", train_subset=TRAIN_DIGITS),
                     model=ModelConfig(arch="mnist_cnn"),
                     training=TrainingConfig(epochs=epochs, batch_size=64, optimizer=ADAM),
                     adversary=adversary, seed=seed)
    seed_everything(seed)
    model = build_model("mnist_cnn", 10)
    outcome = train(model, load_dataset(spec.dataset, data_dir, train=True), spec.training,
                    adversary, device=CPU, checkpoint_dir=root / label, seed=seed,
                    meta=checkpoint_meta(spec))
    return outcome.final_checkpoint


@pytest.fixture(scope="module")
def trained_mnist_models(mnist_data_dir: Path, tmp_path_factory: pytest.TempPathFactory
                         ) -> dict[str, Path]:
    """A standard and a robust model (seed 0) and a robust judge (seed 1), as checkpoints.

    Sizes come from measurements on the 2000 digits (see the module docstring): the robust
    models are PGD-trained in l_2 (eps 2, two steps, one epoch), because one epoch of l_inf
    training at eps 0.3 leaves ``mnist_cnn`` near chance (11-44% measured) while l_2 reaches
    about 80%. The standard model gets four (cheap) epochs: after one, it is still so smooth
    that its large-eps examples look like digits to a robust judge as often as the robust
    model's do; the difference the paper describes appears as standard training goes on.
    """
    root = tmp_path_factory.mktemp("mnist-models")
    threads = torch.get_num_threads()
    torch.set_num_threads(min(2, threads))
    common = {"data_dir": mnist_data_dir, "root": root}
    try:
        return {
            "standard": train_checkpoint("standard", STANDARD, seed=0, epochs=4, **common),
            "l2": train_checkpoint("l2", ROBUST, seed=0, epochs=1, **common),
            "judge": train_checkpoint("judge", ROBUST, seed=1, epochs=1, **common),
        }
    finally:
        torch.set_num_threads(threads)


def metric(reporter: MemoryReporter, name: str, label: str) -> float:
    (value,) = [m.value for m in reporter.metrics.values()
                if m.name == name and m.tags["model"] == label]
    return value


@pytest.mark.slow
def test_robust_model_scores_higher_on_both_measures(trained_mnist_models: dict[str, Path],
                                                     mnist_data_dir: Path, tmp_path: Path) -> None:
    paths = trained_mnist_models
    spec = VisualizeSpec.model_validate({
        "name": "claims", "kind": "visualize", "dataset": {"name": "mnist"},
        "models": [{"label": "standard", "checkpoint": str(paths["standard"])},
                   {"label": "l2", "checkpoint": str(paths["l2"])}],
        "independent": {"label": "judge", "checkpoint": str(paths["judge"])},
        "show": ["large_eps", "gradients"], "n_images": 4, "measure_images": MEASURE_DIGITS,
        "attacks": [{"norm": "l2", "eps": 4, "steps": 10}],
    })
    reporter = MemoryReporter()
    ctx = RunContext(run_id="claims", run_dir=tmp_path, device=CPU, reporter=reporter,
                     data_dir=mnist_data_dir)
    get_experiment("visualize")(spec, ctx)

    accuracy = {row["variant"]: row["accuracy"] for row in reporter.rows()}
    assert accuracy["standard"] > 0.8 and accuracy["l2"] > 0.7  # pictures of working models
    agreement = {label: metric(reporter, "target_agreement", label) for label in ("standard", "l2")}
    alignment = {label: metric(reporter, "gradient_edge_alignment", label)
                 for label in ("standard", "l2")}
    assert agreement["l2"] > agreement["standard"] + 0.1, agreement
    assert alignment["l2"] > alignment["standard"] + 0.04, alignment
    for label in ("standard", "l2"):
        assert 0 < metric(reporter, "large_eps_success", label) <= 1

    names = set(reporter.artifacts)
    per_image = {"gradient_edge_alignment_standard.npy", "gradient_edge_alignment_l2.npy",
                 "judge_sees_target_standard_l2_4.npy", "judge_sees_target_l2_l2_4.npy"}
    assert names == {"large_eps_standard_l2_4.png", "large_eps_l2_l2_4.png",
                     "figure_large_eps_l2_4.png", "gradients_standard.png", "gradients_l2.png",
                     "figure_gradients.png", *per_image}
    for name, artifact in reporter.artifacts.items():
        if name not in per_image:
            decode_png(artifact.data)
    for label in ("standard", "l2"):  # the per-image values the report pairs: their means
        values = per_image_values(reporter.artifacts[f"gradient_edge_alignment_{label}.npy"])
        assert len(values) == MEASURE_DIGITS
        assert values.mean() == pytest.approx(alignment[label], abs=1e-5)
        judged = per_image_values(reporter.artifacts[f"judge_sees_target_{label}_l2_4.npy"])
        assert set(np.unique(judged)) <= {0.0, 1.0} and len(judged) == MEASURE_DIGITS
        # the agreement counts the images both the model and the judge see as the target
        success = metric(reporter, "large_eps_success", label)
        assert judged.mean() >= agreement[label] * success - 1e-6
    robust = reporter.artifacts["large_eps_l2_l2_4.png"].metadata
    assert robust == {"model": "l2", "arch": "mnist_cnn", "train_norm": "l2", "train_eps": 2.0,
                      "norm": "l2", "eps": 4.0, "target": "next"}
    assert reporter.facts["models"]["judge"]["checkpoint"] == str(paths["judge"])


def per_image_values(artifact: ArtifactRecord) -> np.ndarray:
    """A per-example artifact's values, read as the report reads them (no pickle)."""
    values = np.load(io.BytesIO(artifact.data), allow_pickle=False)
    assert values.dtype == np.float32 and values.ndim == 1
    return values


TINY_TRAINING = {"epochs": 1, "batch_size": 32,
                 "optimizer": {"name": "adam", "lr": 1e-3, "weight_decay": 0}}


def tiny_spec(**changes: object) -> VisualizeSpec:
    """Three models trained in the run on 64 digits, everything shown, 8 digits measured."""
    fields = {
        "name": "tiny", "kind": "visualize", "dataset": {"name": "mnist", "train_subset": 64},
        "models": [
            {"label": "standard", "train": {"model": {"arch": "mnist_cnn"},
                                            "training": TINY_TRAINING}},
            {"label": "linf", "train": {"model": {"arch": "mnist_cnn"}, "training": TINY_TRAINING,
                                        "adversary": {"norm": "linf", "eps": 0.3, "steps": 1}}},
        ],
        "independent": {"label": "judge", "train": {"model": {"arch": "mnist_cnn"},
                                                    "training": TINY_TRAINING, "seed": 1}},
        "n_images": 3, "measure_images": 8, "interpolation_points": 4,
        "attacks": [{"norm": "linf", "eps": 0.3, "steps": 2}],
    }
    return VisualizeSpec.model_validate({**fields, **changes})


def run_kind(spec: VisualizeSpec, run_dir: Path, data_dir: Path,
             reporter: MemoryReporter | None = None) -> MemoryReporter:
    reporter = reporter or MemoryReporter()
    ctx = RunContext(run_id=spec.name, run_dir=run_dir, device=CPU, reporter=reporter,
                     data_dir=data_dir)
    get_experiment("visualize")(spec, ctx)
    return reporter


VISUAL_METRICS = {"large_eps_success", "target_agreement", "gradient_edge_alignment"}


def test_the_kind_trains_its_models_in_the_run_and_resumes_without_retraining(
    mnist_data_dir: Path, tmp_path: Path
) -> None:
    spec = tiny_spec()
    first = run_kind(spec, tmp_path, mnist_data_dir)

    files = {label: tmp_path / "models" / label / "epoch-0001.pt"
             for label in ("standard", "linf", "judge")}
    assert {record.metadata["model"]: record.path for record in first.checkpoints} == files
    assert {m.tags["model"] for m in first.metrics.values() if m.name == "train_loss"} == set(files)
    kinds = sorted(a.kind for a in first.artifacts.values())
    assert kinds == (["figure"] * 3 + ["gradients"] * 2 + ["interpolation"] * 2
                     + ["large_eps"] * 2 + [PER_EXAMPLE_KIND] * 4)
    for artifact in first.artifacts.values():
        if artifact.kind == PER_EXAMPLE_KIND:
            assert artifact.metadata["n"] == len(per_image_values(artifact)) == 8
        else:
            decode_png(artifact.data)
    measured = {(m.name, m.tags["model"]) for m in first.metrics.values()
                if m.name in VISUAL_METRICS}
    assert {(name, label) for name in ("large_eps_success", "gradient_edge_alignment")
            for label in ("standard", "linf")} <= measured
    assert {row["variant"]: row["n"] for row in first.rows()} == {"standard": 8, "linf": 8,
                                                                   "judge": 8}
    assert first.last_progress is not None and first.last_progress[0] == first.last_progress[1]

    written = {label: path.stat().st_mtime_ns for label, path in files.items()}
    second = run_kind(spec, tmp_path, mnist_data_dir)
    assert {label: path.stat().st_mtime_ns for label, path in files.items()} == written
    visual = {key: m.value for key, m in first.metrics.items() if m.name in VISUAL_METRICS}
    assert {key: m.value for key, m in second.metrics.items() if m.name in VISUAL_METRICS} == visual
    assert {name: a.data for name, a in second.artifacts.items()} == \
        {name: a.data for name, a in first.artifacts.items()}


def test_the_kind_shows_checkpoint_models_and_checks_their_dataset(
    mnist_data_dir: Path, tmp_path: Path
) -> None:
    trained = run_kind(tiny_spec(show=["gradients"], independent=None), tmp_path / "a",
                       mnist_data_dir)
    paths = {record.metadata["model"]: str(record.path) for record in trained.checkpoints}
    models = [{"label": label, "checkpoint": path} for label, path in paths.items()]
    spec = tiny_spec(models=models, independent=None, show=["interpolation"])
    shown = run_kind(spec, tmp_path / "b", mnist_data_dir)
    assert sorted(shown.artifacts) == ["figure_interpolation_linf_0.3.png",
                                       "interpolation_linf_linf_0.3.png",
                                       "interpolation_standard_linf_0.3.png"]
    assert shown.artifacts["interpolation_linf_linf_0.3.png"].metadata["train_eps"] == 0.3
    assert not shown.checkpoints  # nothing trained
    assert {m.name for m in shown.metrics.values()} == set()  # interpolations have no measure

    elsewhere = tiny_spec(models=models, independent=None, dataset={"name": "fashion_mnist"})
    with pytest.raises(ValueError, match="trained on mnist"):
        run_kind(elsewhere, tmp_path / "c", mnist_data_dir)


def test_a_stop_request_cancels_the_run(mnist_data_dir: Path, tmp_path: Path) -> None:
    reporter = MemoryReporter()
    reporter.stop = True
    with pytest.raises(Cancelled):
        run_kind(tiny_spec(), tmp_path, mnist_data_dir, reporter)


# --------------------------------------------------------------------------- the spec


def test_the_spec_refuses_ambiguous_models() -> None:
    with pytest.raises(ValidationError, match="exactly one of 'run', 'checkpoint' or 'train'"):
        tiny_spec(models=[{"label": "a", "run": "r1", "checkpoint": "x.pt"}])
    with pytest.raises(ValidationError, match="exactly one of"):
        tiny_spec(models=[{"label": "a"}])
    with pytest.raises(ValidationError, match="repeated: standard"):
        tiny_spec(independent={"label": "standard", "run": "r1"})
    with pytest.raises(ValidationError, match="at least n_images"):
        tiny_spec(n_images=9)


def test_an_independent_model_trained_like_a_shown_one_is_refused() -> None:
    twin = {"label": "judge", "train": {"model": {"arch": "mnist_cnn"}, "training": TINY_TRAINING,
                                        "seed": 0}}
    with pytest.raises(ValidationError, match="independent trains exactly like model 'standard'"):
        tiny_spec(independent=twin)
    tiny_spec(independent={**twin, "train": {**twin["train"], "seed": 2}})  # another seed: fine
