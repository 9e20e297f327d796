"""Field recipes in training: per-step schedules, warm-up, EMA, validation split and selection.

The schedules are checked point by point against the papers' own formulas (Wong et al.'s
``np.interp`` of the one-cycle, Rice et al.'s piecewise-constant steps); EMA against a hand
computed average of the weights the optimiser produced; selection against the argmax of the
recorded validation curve, with the best checkpoint's weights re-scored.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import Subset

from contract.records import MemoryReporter
from contract.specs.architecture import ModelConfig
from contract.specs.attacks import PGDAttack
from contract.specs.data import DatasetConfig
from contract.specs.evaluation import EvaluationConfig
from contract.specs.kinds import TrainSpec
from contract.specs.training import AdversaryConfig, OptimizerConfig, ScheduleConfig, TrainingConfig
from workers.science.checkpoints import load_checkpoint, load_model
from workers.science.context import RunContext
from workers.science.datasets import load_dataset
from workers.science.experiments.holdout import hold_out
from workers.science.experiments.train import run as run_train_kind
from workers.science.losses import correct
from workers.science.training import (
    TrainHooks,
    TrainOutcome,
    build_optimizer,
    build_scheduler,
    train,
)
from workers.science.training.ema import WeightAverage
from workers.science.training.schedule import StepRates, thinning_stride
from workers.science.training.validation import ValidationSet, split_indices, validate

from .test_train import (
    BATCH,
    N_TRAIN,
    assert_same_parameters,
    stop_after,
    synthetic_data,
    tiny_model,
)

CPU = torch.device("cpu")
BATCHES = N_TRAIN // BATCH  # 5 batches per epoch


def rates_of(schedule: ScheduleConfig, *, epochs: int, batches: int, lr: float) -> list[float]:
    """The rate StepRates sets before each step, read back from the optimiser."""
    optimizer = build_optimizer(nn.Linear(2, 2), OptimizerConfig(lr=lr))
    rates = StepRates(optimizer, schedule, lr=lr, epochs=epochs, batches_per_epoch=batches)
    seen = []
    for epoch in range(epochs):
        rates.start_epoch()
        for index in range(batches):
            rates.before_step(epoch, index)
            seen.append(optimizer.param_groups[0]["lr"])
        rates.end_epoch()
    return seen


def test_one_cycle_is_wong_et_al_s_interpolation_point_by_point() -> None:
    epochs, batches, lr = 3, 4, 0.2
    got = rates_of(ScheduleConfig(kind="one_cycle"), epochs=epochs, batches=batches, lr=lr)
    # fast_adversarial/CIFAR10/train_fgsm.py: t = epoch + (i + 1) / len(loader)
    wong = [float(np.interp([e + (i + 1) / batches], [0, epochs * 2 / 5, epochs], [0, lr, 0])[0])
            for e in range(epochs) for i in range(batches)]
    assert got == pytest.approx(wong, abs=1e-12)
    # by hand: the peak is at t = 1.2 epochs; t = 0.25 -> 0.2 * 0.25 / 1.2; last step -> 0
    assert got[0] == pytest.approx(0.2 * 0.25 / 1.2)
    assert got[4] == pytest.approx(0.2 * (3 - 1.25) / 1.8)
    assert got[-1] == 0.0 and max(got) < lr


def test_piecewise_interpolates_its_points_and_drops_where_two_share_an_epoch() -> None:
    points = [[0, 0.0], [1, 0.1], [2, 0.1], [2, 0.01]]
    got = rates_of(ScheduleConfig(kind="piecewise", points=points), epochs=3, batches=4, lr=0.5)
    t = [k / 4 for k in range(1, 13)]
    by_hand = [0.025, 0.05, 0.075, 0.1, 0.1, 0.1, 0.1, 0.01, 0.01, 0.01, 0.01, 0.01]
    assert got == pytest.approx(by_hand, abs=1e-12), list(zip(t, got, strict=True))
    # Rice et al.'s piecewise (train_cifar.py): lr_max until half, /10 until 3/4, /100 after
    rice = ScheduleConfig(kind="piecewise", points=[[0, 0.1], [2, 0.1], [2, 0.01], [3, 0.01],
                                                    [3, 0.001]])
    rice_rates = rates_of(rice, epochs=4, batches=2, lr=0.1)
    t = [k / 2 for k in range(1, 9)]
    expected = [0.1 if s / 4 < 0.5 else 0.01 if s / 4 < 0.75 else 0.001 for s in t]
    assert rice_rates == pytest.approx(expected)


def test_warmup_scales_an_epoch_schedule_per_step_and_leaves_its_epochs_alone() -> None:
    schedule = ScheduleConfig(kind="multistep", milestones=[2], gamma=0.5, warmup_epochs=1.5)
    optimizer = build_optimizer(nn.Linear(2, 2), OptimizerConfig(lr=0.1))
    scheduler = build_scheduler(optimizer, schedule, 3)
    rates = StepRates(optimizer, schedule, lr=0.1, epochs=3, batches_per_epoch=4)
    seen, epoch_rates = [], []
    for epoch in range(3):
        epoch_rates.append(optimizer.param_groups[0]["lr"])
        rates.start_epoch()
        for index in range(4):
            rates.before_step(epoch, index)
            seen.append(optimizer.param_groups[0]["lr"])
            optimizer.step()  # no gradients: only keeps torch's order-of-calls check quiet
        rates.end_epoch()
        scheduler.step()
    assert epoch_rates == pytest.approx([0.1, 0.1, 0.05])
    by_hand = [0.1 * k / 6 for k in range(1, 7)] + [0.1, 0.1] + [0.05] * 4
    assert seen == pytest.approx(by_hand)


def test_epoch_kinds_without_warmup_never_touch_the_rate() -> None:
    for kind in ("constant", "step", "multistep", "cosine"):
        optimizer = build_optimizer(nn.Linear(2, 2), OptimizerConfig(lr=0.1))
        rates = StepRates(optimizer, ScheduleConfig(kind=kind), lr=0.1, epochs=2,
                          batches_per_epoch=3)
        optimizer.param_groups[0]["lr"] = 0.123
        rates.start_epoch()
        assert rates.before_step(0, 0) is None and not rates.active
        assert optimizer.param_groups[0]["lr"] == 0.123


def test_lr_per_iteration_is_thinned_evenly_to_at_most_the_limit() -> None:
    assert thinning_stride(10_000) == 1 and thinning_stride(10_001) == 2
    assert thinning_stride(391 * 200) == 8  # CIFAR-10 at batch 128, 200 epochs: 9,775 points
    optimizer = build_optimizer(nn.Linear(2, 2), OptimizerConfig(lr=0.1))
    rates = StepRates(optimizer, ScheduleConfig(kind="one_cycle"), lr=0.1, epochs=2,
                      batches_per_epoch=3)
    rates.stride = 2  # as if the run were long
    rates.start_epoch()
    recorded = [rates.before_step(e, i) for e in range(2) for i in range(3)]
    assert [r[0] for r in recorded if r is not None] == [1, 3, 5]


def training(directory: Path, cfg: TrainingConfig, *, hooks: TrainHooks | None = None,
             validation: ValidationSet | None = None, epochs_data: int = N_TRAIN) -> TrainOutcome:
    data = synthetic_data()
    return train(tiny_model(), Subset(data, range(epochs_data)), cfg,
                 AdversaryConfig(norm="linf", eps=0.1, steps=2), device=CPU,
                 checkpoint_dir=directory, seed=3, hooks=hooks, validation=validation)


RECIPE = TrainingConfig(
    epochs=3, batch_size=BATCH,
    optimizer=OptimizerConfig(lr=0.2, momentum=0.9, weight_decay=5e-4, nesterov=True),
    schedule=ScheduleConfig(kind="one_cycle", warmup_epochs=0.5),
    ema=0.9, select="best_robust",
)


def validation_set() -> ValidationSet:
    data = synthetic_data()
    return ValidationSet(Subset(data, range(48, N_TRAIN)),
                         PGDAttack(norm="linf", eps=0.1, steps=3))


def test_the_loop_records_every_step_s_rate_and_the_first_as_the_epoch_s(tmp_path: Path) -> None:
    outcome = training(tmp_path, RECIPE)
    points = [p for m in outcome.history for p in m.lr_points]
    assert [int(step) for step, _ in points] == list(range(1, 3 * BATCHES + 1))
    expected = rates_of(RECIPE.schedule, epochs=3, batches=BATCHES, lr=0.2)
    assert [rate for _, rate in points] == pytest.approx(expected)
    assert [m.lr for m in outcome.history] == pytest.approx(expected[::BATCHES])


def test_ema_is_the_hand_computed_average_of_the_weights_after_each_step(tmp_path: Path) -> None:
    cfg = TrainingConfig(epochs=1, batch_size=BATCH, ema=0.8,
                         optimizer=OptimizerConfig(lr=0.1, momentum=0.0, weight_decay=0.0))
    model = tiny_model()
    after_steps = [copy.deepcopy(model.state_dict())]  # the average starts at the initial weights
    hooks = TrainHooks(on_batch=lambda *_: after_steps.append(copy.deepcopy(model.state_dict())))
    outcome = train(model, synthetic_data(), cfg, AdversaryConfig(), device=CPU,
                    checkpoint_dir=tmp_path, seed=3, hooks=hooks)
    assert len(after_steps) == BATCHES + 1
    assert outcome.ema_model is not None
    averaged = outcome.ema_model.state_dict()
    for name, _ in model.named_parameters():
        expected = after_steps[0][name].clone()
        for state in after_steps[1:]:
            expected = 0.8 * expected + 0.2 * state[name]
        assert torch.allclose(averaged[name], expected, atol=1e-6), name
    assert not torch.allclose(averaged["fc.weight"], model.state_dict()["fc.weight"])
    for name, _ in model.named_buffers():  # BatchNorm statistics copied, not averaged
        assert torch.equal(averaged[name], model.state_dict()[name]), name
    # the checkpoint holds both; load_model gives the average (what the run evaluates)
    payload = load_checkpoint(outcome.final_checkpoint)
    assert torch.equal(payload["ema"]["fc.weight"], averaged["fc.weight"])
    assert torch.equal(payload["model"]["fc.weight"], model.state_dict()["fc.weight"])


def test_ema_update_matches_torch_s_own_averaged_model() -> None:
    """Against torch.optim.swa_utils' EMA (decay d: ema = d * ema + (1 - d) * w)."""
    model = tiny_model()
    ours = WeightAverage(model, 0.7)
    reference = torch.optim.swa_utils.AveragedModel(
        model, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(0.7))
    reference.update_parameters(model)  # its first call copies: ours starts at the weights too
    for step in range(3):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p) * (step + 1))
        ours.update()
        reference.update_parameters(model)
    for a, b in zip(ours.model.parameters(), reference.module.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-6)


def test_resume_with_one_cycle_ema_and_selection_is_exact(tmp_path: Path) -> None:
    reference = training(tmp_path / "reference", RECIPE, validation=validation_set())
    interrupted = tmp_path / "interrupted"
    with pytest.raises(Exception, match="training stopped"):
        training(interrupted, RECIPE, hooks=TrainHooks(should_stop=stop_after(8)),
                 validation=validation_set())
    resumed = training(interrupted, RECIPE, validation=validation_set())
    assert resumed.resumed_from == 1
    assert_same_parameters(reference.model, resumed.model)
    assert reference.ema_model is not None and resumed.ema_model is not None
    assert_same_parameters(reference.ema_model, resumed.ema_model)
    assert [m.val_robust_accuracy for m in reference.history] == \
        [m.val_robust_accuracy for m in resumed.history]
    assert [m.lr_points for m in reference.history] == [m.lr_points for m in resumed.history]
    assert reference.best is not None and resumed.best is not None
    assert (reference.best.epoch, reference.best.value) == (resumed.best.epoch, resumed.best.value)
    best_a = load_checkpoint(reference.best.checkpoint)["model"]
    best_b = load_checkpoint(resumed.best.checkpoint)["model"]
    assert all(torch.equal(best_a[k], best_b[k]) for k in best_a)


def test_validation_examples_are_drawn_by_the_seed_and_disjoint_from_training() -> None:
    train_a, held_a = split_indices(100, 30, seed=5)
    assert len(held_a) == 30 and len(train_a) == 70
    assert not set(train_a) & set(held_a) and sorted(train_a + held_a) == list(range(100))
    assert split_indices(100, 30, seed=5) == (train_a, held_a)
    assert split_indices(100, 30, seed=6)[1] != held_a
    assert held_a != list(range(70, 100))  # not simply the tail
    with pytest.raises(ValueError, match="leaves no training examples"):
        split_indices(30, 30, seed=0)


def npz_dataset(path: Path, n_train: int = 120, n_test: int = 40) -> Path:
    """Three classes of 8x8 grey images: the bright band's position is the label."""
    rng = np.random.default_rng(0)

    def images(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = rng.integers(0, 3, n)
        x = rng.uniform(0, 0.5, (n, 8, 8, 1))
        for label in range(3):
            x[y == label, 3 * label:3 * label + 2] += 0.25  # faint: robustness comes and goes
        return x.clip(0, 1).astype(np.float32), y

    x_train, y_train = images(n_train)
    x_test, y_test = images(n_test)
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    return path


def selection_spec(npz: Path) -> TrainSpec:
    return TrainSpec(
        name="select", kind="train", seed=1,
        dataset=DatasetConfig(name="npz", root=str(npz), train_subset=100, validation=40),
        model=ModelConfig(arch="linear"),
        training=TrainingConfig(epochs=5, batch_size=20, select="best_robust",
                                optimizer=OptimizerConfig(name="sgd", lr=0.5, momentum=0.9),
                                schedule=ScheduleConfig(kind="piecewise",
                                                        points=[[0, 0.5], [5, 0.0]])),
        adversary=AdversaryConfig(norm="linf", eps=0.15, steps=3),
        evaluation=EvaluationConfig(checks="off", checkpoints=["final", "best"],
                                    attacks=[PGDAttack(norm="linf", eps=0.15, steps=5)]),
    )


def test_hold_out_trains_on_the_rest_and_records_the_split(tmp_path: Path) -> None:
    spec = selection_spec(npz_dataset(tmp_path / "d.npz"))
    data = load_dataset(spec.dataset, tmp_path, train=True)
    reporter = MemoryReporter()
    trained_on, validation = hold_out(spec, tmp_path, data, reporter)
    assert validation is not None and isinstance(trained_on, Subset)
    assert isinstance(validation.data, Subset)
    assert len(trained_on) == 60 and len(validation.data) == 40
    assert not set(trained_on.indices) & set(validation.data.indices)
    assert set(trained_on.indices) | set(validation.data.indices) == set(range(100))
    facts = reporter.facts["validation"]
    assert (facts["examples"], facts["train_examples"]) == (40, 60)
    assert len(facts["examples_hash"]) == 64


def test_selection_keeps_the_epoch_of_the_best_validation_robust_accuracy(tmp_path: Path) -> None:
    spec = selection_spec(npz_dataset(tmp_path / "d.npz"))
    reporter = MemoryReporter()
    ctx = RunContext(run_id="select", reporter=reporter, device=CPU, run_dir=tmp_path / "run",
                     data_dir=tmp_path)
    run_train_kind(spec, ctx)
    curve = {m.step: m.value for m in reporter.metrics.values() if m.name == "val_robust_accuracy"}
    assert sorted(curve) == [1, 2, 3, 4, 5]
    assert {m.step for m in reporter.metrics.values() if m.name == "val_accuracy"} == set(curve)
    steps = sorted(curve)
    best_epoch = steps[int(np.argmax([curve[s] for s in steps]))]  # the first on a tie
    assert best_epoch < 5, curve  # this seed overfits: the selected weights are not the last
    selected = reporter.facts["selected"]
    assert selected == {"checkpoint": "best", "epoch": best_epoch,
                        "metric": "val_robust_accuracy", "value": curve[best_epoch]}
    (best,) = [c for c in reporter.checkpoints if c.metadata.get("best")]
    assert (best.epoch, best.metadata["value"]) == (best_epoch, curve[best_epoch])
    lr_steps = sorted(m.step for m in reporter.metrics.values() if m.name == "lr_per_iteration")
    assert lr_steps == list(range(1, 5 * 3 + 1))  # 60 examples / batch 20 = 3 steps an epoch

    # the best file holds that epoch's weights: re-scoring them gives the recorded value
    model, meta = load_model(best.path, CPU)
    assert meta["epoch"] == best_epoch
    _, validation = hold_out(spec, tmp_path, load_dataset(spec.dataset, tmp_path, train=True),
                             MemoryReporter())
    assert validation is not None
    _, robust = validate(model, validation, device=CPU, seed=spec.seed + best_epoch - 1)
    assert robust == curve[best_epoch]

    # the 'best' rows evaluate those weights; the 'final' rows the last epoch's
    rows = {(r["checkpoint"], r["attack"]): r for r in reporter.rows()}
    assert {c for c, _ in rows} == {"final", "best"}
    test = load_dataset(spec.dataset.model_copy(update={"augment": False}), tmp_path, train=False)
    x = torch.stack([test[i][0] for i in range(len(test))])
    y = torch.stack([torch.as_tensor(test[i][1]) for i in range(len(test))])
    with torch.no_grad():
        best_clean = correct(model(x), y).float().mean().item()
    assert rows[("best", "none")]["accuracy"] == pytest.approx(best_clean)
    final_model, _ = load_model(ctx.run_dir / "checkpoints" / "epoch-0005.pt", CPU)
    with torch.no_grad():
        final_clean = correct(final_model(x), y).float().mean().item()
    assert rows[("final", "none")]["accuracy"] == pytest.approx(final_clean)
    assert best_clean != final_clean  # so the two checks above tell the weights apart
