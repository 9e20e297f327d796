"""Training: exact resume, eps ramp-up, schedules, seeds, checkpoint contents, the train kind.

Tiny models on synthetic 8x8 images keep the training tests to seconds; the train kind's end to
end test uses a few hundred real MNIST digits (fixture ``mnist_data_dir``) and the linear model.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from contract.records import Cancelled, CheckpointRecord, MemoryReporter
from contract.specs.architecture import ModelConfig
from contract.specs.attacks import PGDAttack
from contract.specs.data import DatasetConfig
from contract.specs.evaluation import EvaluationConfig
from contract.specs.kinds import TrainSpec
from contract.specs.training import AdversaryConfig, OptimizerConfig, ScheduleConfig, TrainingConfig
from workers.science.attacks import pgd
from workers.science.checkpoints import (
    capture_rng,
    checkpoint_path,
    latest_checkpoint,
    load_checkpoint,
    load_model,
    restore_rng,
    save_checkpoint,
)
from workers.science.context import RunContext
from workers.science.experiments.train import run as run_train_kind
from workers.science.losses import correct
from workers.science.models import build_model
from workers.science.training import (
    TrainHooks,
    TrainOutcome,
    build_optimizer,
    build_scheduler,
    epoch_eps,
    epoch_step_size,
    train,
)

CPU = torch.device("cpu")
EPOCHS = 4
BATCH = 16
N_TRAIN = 80  # 5 batches per epoch
CFG = TrainingConfig(
    epochs=EPOCHS,
    batch_size=BATCH,
    optimizer=OptimizerConfig(name="sgd", lr=0.05, momentum=0.9, weight_decay=1e-3),
    schedule=ScheduleConfig(kind="multistep", milestones=[2, 3], gamma=0.5),
)
ADVERSARY = AdversaryConfig(norm="linf", eps=0.1, steps=2, ramp_epochs=2)


class TinyNet(nn.Module):
    """Conv + batch-norm + linear on (B, 1, 8, 8): batch-norm makes the buffers matter."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4 * 8 * 8, 3)
        self.modes: list[bool] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 1, 8, 8) -> (B, 3)
        self.modes.append(self.training)
        return self.fc(torch.relu(self.bn(self.conv(x))).flatten(1))


def tiny_model(seed: int = 0) -> TinyNet:
    torch.manual_seed(seed)
    return TinyNet()


def synthetic_data() -> TensorDataset:
    """Three classes: the brightest third of the image (rows 0-2, 3-5, 6-7) is the label."""
    generator = torch.Generator().manual_seed(1234)
    y = torch.randint(0, 3, (N_TRAIN,), generator=generator)
    x = 0.3 * torch.rand(N_TRAIN, 1, 8, 8, generator=generator)
    for label, rows in enumerate((slice(0, 3), slice(3, 6), slice(6, 8))):
        x[y == label, :, rows, :] += 0.6
    return TensorDataset(x.clamp(0, 1), y)


def stop_after(batches: int) -> Callable[[], bool]:
    """A ``should_stop`` that turns true at the boundary after ``batches`` batches."""
    calls = iter(range(10**9))
    return lambda: next(calls) >= batches


def run_training(directory: Path, *, model_seed: int = 0, seed: int = 7,
                 hooks: TrainHooks | None = None, checkpoint_every: int = 1,
                 adversary: AdversaryConfig = ADVERSARY,
                 meta: dict | None = None) -> TrainOutcome:
    return train(tiny_model(model_seed), synthetic_data(), CFG, adversary, device=CPU,
                 checkpoint_dir=directory, seed=seed, checkpoint_every=checkpoint_every,
                 hooks=hooks, meta=meta)


def assert_same_parameters(a: nn.Module, b: nn.Module) -> None:
    state_a, state_b = a.state_dict(), b.state_dict()
    assert state_a.keys() == state_b.keys()
    for name in state_a:
        assert torch.equal(state_a[name], state_b[name]), name


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    """Tiny models train an order of magnitude faster on one thread of a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> TrainOutcome:
    """One uninterrupted adversarial training, the yardstick of the resume tests."""
    return run_training(tmp_path_factory.mktemp("reference"))


# --------------------------------------------------------------------------- resume


@pytest.mark.parametrize(
    ("stop_at_batch", "checkpoint_every", "resumes_from"),
    [
        (12, 1, 2),  # mid-epoch 3: the partial epoch is trained again
        (10, 1, 2),  # exactly at the boundary after epoch 2
        (17, 2, 2),  # epoch 4, last checkpoint after epoch 2: epochs 3 and 4 again
        (3, 1, 0),  # inside epoch 1, before any checkpoint: a fresh start
    ],
)
def test_resumed_training_ends_exactly_where_an_uninterrupted_one_does(
    tmp_path: Path, reference: TrainOutcome, stop_at_batch: int, checkpoint_every: int,
    resumes_from: int,
) -> None:
    with pytest.raises(Cancelled):
        run_training(tmp_path, hooks=TrainHooks(should_stop=stop_after(stop_at_batch)),
                     checkpoint_every=checkpoint_every)
    # Disturb every global generator: the resume must restore them from the checkpoint.
    random.random()
    np.random.rand()
    torch.rand(3)
    epochs_run: list[int] = []
    resumes: list[tuple[Path, int, list[int]]] = []
    # With a checkpoint the initial weights are irrelevant; without one they are the caller's.
    model_seed = 99 if resumes_from else 0
    resumed = run_training(tmp_path, model_seed=model_seed, checkpoint_every=checkpoint_every,
                           hooks=TrainHooks(on_epoch=lambda m: epochs_run.append(m.epoch),
                                            on_resume=lambda path, epoch, history: resumes.append(
                                                (path, epoch, [m.epoch for m in history]))))
    assert resumed.resumed_from == resumes_from
    assert epochs_run == list(range(resumes_from + 1, EPOCHS + 1))  # finished epochs not redone
    # on_resume is told once what the earlier call did (it may have died before reporting it)
    done = list(range(1, resumes_from + 1))
    assert resumes == ([(checkpoint_path(tmp_path, resumes_from), resumes_from, done)]
                       if resumes_from else [])
    assert_same_parameters(resumed.model, reference.model)
    assert resumed.history == reference.history


def test_a_finished_training_only_loads_its_final_checkpoint(
    tmp_path: Path, reference: TrainOutcome
) -> None:
    run_training(tmp_path)
    batches: list[int] = []
    again = run_training(tmp_path, model_seed=5, hooks=TrainHooks(on_batch=lambda *a: batches.append(1)))
    assert batches == []
    assert again.resumed_from == EPOCHS
    assert again.final_checkpoint == checkpoint_path(tmp_path, EPOCHS)
    assert again.history == reference.history
    assert_same_parameters(again.model, reference.model)


def test_resume_refuses_a_checkpoint_of_another_training(tmp_path: Path) -> None:
    with pytest.raises(Cancelled):
        run_training(tmp_path, meta={"arch": "tiny", "train_eps": 0.1},
                     hooks=TrainHooks(should_stop=stop_after(6)))
    with pytest.raises(ValueError, match="different training"):
        run_training(tmp_path, meta={"arch": "tiny", "train_eps": 0.2})


def test_cancel_is_checked_before_every_batch(tmp_path: Path) -> None:
    seen: list[tuple[int, int, int]] = []
    with pytest.raises(Cancelled):
        run_training(tmp_path, hooks=TrainHooks(should_stop=stop_after(7),
                                                on_batch=lambda *a: seen.append(a)))
    assert len(seen) == 7
    assert seen[-1] == (1, 2, N_TRAIN // BATCH)  # epoch index 1, 2 of 5 batches done
    assert latest_checkpoint(tmp_path) == checkpoint_path(tmp_path, 1)


# --------------------------------------------------------------------------- seeds


def test_same_seed_same_model_and_another_seed_another(tmp_path: Path,
                                                       reference: TrainOutcome) -> None:
    again = run_training(tmp_path / "same")
    assert_same_parameters(again.model, reference.model)
    other = run_training(tmp_path / "other", seed=8)
    assert not torch.equal(other.model.state_dict()["fc.weight"],
                           reference.model.state_dict()["fc.weight"])


# --------------------------------------------------------------------------- eps ramp-up


def test_eps_grows_linearly_from_zero_over_the_ramp() -> None:
    adversary = AdversaryConfig(eps=0.3, steps=10, ramp_epochs=3)
    expected = [0.0, 0.1, 0.2, 0.3, 0.3, 0.3]
    assert [epoch_eps(adversary, e) for e in range(6)] == pytest.approx(expected, abs=1e-12)
    assert epoch_eps(AdversaryConfig(eps=0.3), 0) == 0.3
    # The step size keeps its ratio to eps (default 2.5 * eps / steps) along the ramp.
    assert epoch_step_size(adversary, 0.1) == pytest.approx(2.5 * 0.1 / 10)
    explicit = AdversaryConfig(eps=0.3, steps=10, step_size=0.06, ramp_epochs=3)
    assert epoch_step_size(explicit, 0.15) == pytest.approx(0.03)


def test_training_history_follows_the_ramp_and_the_schedule(reference: TrainOutcome) -> None:
    history = reference.history
    assert [m.epoch for m in history] == [1, 2, 3, 4]
    assert [m.eps for m in history] == pytest.approx([0.0, 0.05, 0.1, 0.1])
    assert history[0].adv_accuracy is None  # eps 0: standard training
    assert all(m.adv_accuracy is not None for m in history[1:])
    assert [m.lr for m in history] == pytest.approx([0.05, 0.05, 0.025, 0.0125])
    # PGD makes no clean forward: clean accuracy only where the epoch trained on clean batches.
    assert [m.accuracy is None for m in history] == [False, True, True, True]
    assert all(0 <= (m.accuracy if m.accuracy is not None else m.adv_accuracy) <= 1
               and math.isfinite(m.loss) for m in history)


def test_adversarial_training_attacks_in_train_mode_and_keeps_running_stats_clean(
    tmp_path: Path,
) -> None:
    """Madry et al. attack the training-mode model; only the step's forward updates BN stats."""
    config = TrainingConfig(epochs=1, batch_size=BATCH)
    model = tiny_model()
    train(model, synthetic_data(), config, AdversaryConfig(eps=0.1, steps=3), device=CPU,
          checkpoint_dir=tmp_path, seed=0)
    batches = N_TRAIN // BATCH
    # per batch: 3 PGD steps and the training step, nothing else (no pass only for a metric)
    assert len(model.modes) == batches * 4
    assert all(model.modes)
    assert int(model.bn.state_dict()["num_batches_tracked"]) == batches


def test_adversarial_training_makes_the_model_more_robust_to_its_attack(tmp_path: Path) -> None:
    """On the synthetic task the adversarially trained model resists PGD better."""
    data = synthetic_data()
    x, y = data.tensors
    config = TrainingConfig(epochs=6, batch_size=BATCH,
                            optimizer=OptimizerConfig(name="adam", lr=0.01, weight_decay=0))
    accuracies = {}
    for eps in (0.0, 0.25):
        model = train(tiny_model(), data, config, AdversaryConfig(eps=eps, steps=5), device=CPU,
                      checkpoint_dir=tmp_path / str(eps), seed=0).model.eval()
        x_adv = pgd(model, x, y, norm="linf", eps=0.25, step_size=0.05, steps=10)
        accuracies[eps] = float(correct(model(x_adv), y).float().mean())
    assert accuracies[0.25] > accuracies[0.0] + 0.2


# --------------------------------------------------------------------------- schedules


@pytest.mark.parametrize(
    ("schedule", "closed_form"),
    [
        (ScheduleConfig(kind="constant"), lambda e: 0.1),
        (ScheduleConfig(kind="step", step_size=3, gamma=0.5), lambda e: 0.1 * 0.5 ** (e // 3)),
        (ScheduleConfig(kind="multistep", milestones=[2, 5], gamma=0.1),
         lambda e: 0.1 * 0.1 ** sum(e >= m for m in (2, 5))),
        (ScheduleConfig(kind="cosine"), lambda e: 0.05 * (1 + math.cos(math.pi * e / 8))),
    ],
)
def test_learning_rate_schedules_follow_their_closed_forms(
    schedule: ScheduleConfig, closed_form: Callable[[int], float]
) -> None:
    optimizer = build_optimizer(nn.Linear(2, 1), OptimizerConfig(lr=0.1))
    scheduler = build_scheduler(optimizer, schedule, epochs=8)
    rates = []
    for _ in range(8):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert rates == pytest.approx([closed_form(e) for e in range(8)], rel=1e-9, abs=1e-15)


def test_optimizers_are_built_as_configured() -> None:
    params = nn.Linear(2, 1)
    sgd = build_optimizer(params, OptimizerConfig(name="sgd", lr=0.2, momentum=0.5, weight_decay=0.01))
    assert isinstance(sgd, torch.optim.SGD)
    assert sgd.defaults["momentum"] == 0.5 and sgd.defaults["weight_decay"] == 0.01
    adam = build_optimizer(params, OptimizerConfig(name="adam", lr=1e-3, weight_decay=0))
    assert isinstance(adam, torch.optim.Adam) and adam.defaults["lr"] == 1e-3


# --------------------------------------------------------------------------- checkpoints


def test_checkpoint_holds_optimizer_scheduler_rng_and_history(reference: TrainOutcome) -> None:
    payload = load_checkpoint(checkpoint_path(reference.final_checkpoint.parent, 2))
    assert payload["epoch"] == 2 and payload["meta"]["epoch"] == 2
    momentum = [state["momentum_buffer"] for state in payload["optimizer"]["state"].values()]
    assert len(momentum) == len(list(reference.model.parameters()))
    assert all(buffer.abs().sum() > 0 for buffer in momentum)
    assert payload["scheduler"]["last_epoch"] == 2
    assert payload["scheduler"]["_last_lr"] == pytest.approx([0.025])
    assert set(payload["rng"]) == {"python", "numpy", "torch", "cuda", "loader"}
    assert [row["epoch"] for row in payload["history"]] == [1, 2]
    assert "bn.running_mean" in payload["model"]


def test_rng_capture_and_restore_replays_every_generator() -> None:
    generator = torch.Generator().manual_seed(3)
    state = capture_rng(generator)

    def draw() -> tuple:
        return (random.random(), float(np.random.rand()), float(torch.rand(())),
                float(torch.rand((), generator=generator)))

    first = draw()
    restore_rng(state, generator)
    assert draw() == first


def test_latest_checkpoint_counts_epochs_and_ignores_partial_writes(tmp_path: Path) -> None:
    assert latest_checkpoint(tmp_path / "missing") is None
    assert latest_checkpoint(tmp_path) is None
    for epoch in (2, 10, 9):
        checkpoint_path(tmp_path, epoch).write_bytes(b"")
    (tmp_path / ".epoch-0011.pt.abc.tmp").write_bytes(b"")
    assert latest_checkpoint(tmp_path) == checkpoint_path(tmp_path, 10)


def test_unreadable_checkpoints_raise_clear_errors(tmp_path: Path, reference: TrainOutcome) -> None:
    missing = tmp_path / "nope.pt"
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        load_checkpoint(missing)
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        load_model(missing, CPU)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(reference.final_checkpoint.read_bytes()[:2000])
    with pytest.raises(ValueError, match="truncated.pt"):
        load_checkpoint(truncated)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(2)}, foreign)
    with pytest.raises(ValueError, match="not a robustlab checkpoint"):
        load_checkpoint(foreign)


def test_load_model_rebuilds_the_saved_model(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build_model("linear", 2, dataset="binary_mnist")
    meta = {"arch": "linear", "dataset": "binary_mnist", "num_classes": 2,
            "train_norm": "linf", "train_eps": 0.2}
    path = save_checkpoint(tmp_path / "model.pt", model=model, optimizer=None, scheduler=None,
                           epoch=3, rng=capture_rng(), meta=meta)
    loaded, loaded_meta = load_model(path, CPU)
    assert loaded_meta == {**meta, "epoch": 3}
    assert not loaded.training
    x = torch.rand(5, 1, 28, 28)
    assert torch.equal(loaded(x), model(x))
    assert not list(tmp_path.glob("*.tmp"))


# --------------------------------------------------------------------------- the train kind


def kind_spec() -> TrainSpec:
    return TrainSpec(
        kind="train",
        name="train-kind-test",
        seed=3,
        dataset=DatasetConfig(name="binary_mnist", train_subset=240, test_subset=120),
        model=ModelConfig(arch="linear"),
        training=TrainingConfig(epochs=3, batch_size=60,
                                optimizer=OptimizerConfig(name="sgd", lr=0.1, weight_decay=0)),
        adversary=AdversaryConfig(norm="linf", eps=0.2, steps=3, ramp_epochs=1),
        evaluation=EvaluationConfig(attacks=[PGDAttack(norm="linf", eps=0.2, steps=5)],
                                    checks=False),
        checkpoint_every=2,
    )


class StopAfter(MemoryReporter):
    """A reporter whose cancel flag turns true after ``checks`` calls of ``should_stop``."""

    def __init__(self, checks: int) -> None:
        super().__init__()
        self.checks = checks

    def should_stop(self) -> bool:
        self.checks -= 1
        return self.checks < 0


def context(run_dir: Path, data_dir: Path, reporter: MemoryReporter) -> RunContext:
    return RunContext(run_id="r1", run_dir=run_dir, device=CPU, reporter=reporter,
                      data_dir=data_dir)


@pytest.fixture(scope="module")
def kind_run(tmp_path_factory: pytest.TempPathFactory,
             mnist_data_dir: Path) -> tuple[Path, MemoryReporter]:
    run_dir = tmp_path_factory.mktemp("kind")
    reporter = MemoryReporter()
    run_train_kind(kind_spec(), context(run_dir, mnist_data_dir, reporter))
    return run_dir, reporter


def test_train_kind_reports_metrics_checkpoints_and_evaluations(
    kind_run: tuple[Path, MemoryReporter]
) -> None:
    run_dir, reporter = kind_run
    assert len(reporter.facts["data_hash"]) == 64
    names = {(m.name, m.step) for m in reporter.metrics.values()}
    for epoch in (1, 2, 3):
        assert {("train_loss", epoch), ("lr", epoch), ("eps", epoch)} <= names
    # clean accuracy comes from the training forward: measured in the standard epoch only
    assert ("train_accuracy", 1) in names and ("train_accuracy", 2) not in names
    assert ("train_adv_accuracy", 1) not in names  # ramp: epoch 1 is standard training
    assert {("train_adv_accuracy", 2), ("train_adv_accuracy", 3)} <= names
    assert [(c.epoch, c.final) for c in reporter.checkpoints] == [(2, False), (3, True)]
    for record in reporter.checkpoints:
        assert record.path.is_file() and record.path.is_relative_to(run_dir)
        assert (record.arch, record.dataset, record.train_norm, record.train_eps) == (
            "linear", "binary_mnist", "linf", 0.2)
    rows = reporter.rows()
    attacks = {row["attack"] for row in rows}
    assert {"none", "pgd"} <= attacks
    for row in rows:
        assert (row["model"], row["dataset"], row["split"]) == ("linear", "binary_mnist", "test")
        assert (row["train_norm"], row["train_eps"], row["n"]) == ("linf", 0.2, 120)
    clean = next(row for row in rows if row["attack"] == "none")
    robust = next(row for row in rows if row["attack"] == "pgd")
    assert clean["accuracy"] > 0.8  # 5 vs 7 is easy even for 240 digits
    assert robust["accuracy"] <= clean["accuracy"]
    assert reporter.last_progress == (4.0, 4, "evaluation")


def test_train_kind_checkpoint_rebuilds_with_its_meta(
    kind_run: tuple[Path, MemoryReporter]
) -> None:
    final = reporter_final(kind_run[1])
    model, meta = load_model(final, CPU)
    assert {k: meta[k] for k in ("arch", "dataset", "num_classes", "train_norm", "train_eps",
                                 "epoch", "seed")} == {
        "arch": "linear", "dataset": "binary_mnist", "num_classes": 2, "train_norm": "linf",
        "train_eps": 0.2, "epoch": 3, "seed": 3}
    # the spec without the fields added later at their defaults (what older checkpoints hold)
    assert TrainSpec.model_validate(meta["spec"]) == kind_spec()
    assert "validation" not in meta["spec"]["dataset"]
    assert model.weight.shape == (1, 784)


def without_timings(rows: list[dict]) -> list[dict]:
    """Rows with the attacks' wall-clock ``details.seconds`` left out (it differs run to run)."""
    return [{**row, "details": {k: v for k, v in row["details"].items() if k != "seconds"}}
            for row in rows]


def reporter_final(reporter: MemoryReporter) -> Path:
    return next(c.path for c in reporter.checkpoints if c.final)


def test_train_kind_second_call_resumes_with_the_same_keys(
    kind_run: tuple[Path, MemoryReporter], mnist_data_dir: Path
) -> None:
    run_dir, first = kind_run
    again = MemoryReporter()
    run_train_kind(kind_spec(), context(run_dir, mnist_data_dir, again))
    assert again.last_progress == (4.0, 4, "evaluation")
    # the finished epochs' metrics are reported again from the checkpoint (the store upserts)
    assert again.metrics == first.metrics
    assert [(c.path, c.final) for c in again.checkpoints] == [(reporter_final(first), True)]
    assert again.evaluations.keys() == first.evaluations.keys()
    assert without_timings(again.rows()) == without_timings(first.rows())


class DiesReportingCheckpoint(MemoryReporter):
    """A reporter whose process "dies" (raises) when told of the checkpoint of ``epoch``:
    the file is on disk, but neither it nor its epoch's metrics reached the store."""

    def __init__(self, epoch: int) -> None:
        super().__init__()
        self.epoch = epoch

    def checkpoint(self, record: CheckpointRecord) -> None:
        if record.epoch == self.epoch:
            raise KeyboardInterrupt("killed")
        super().checkpoint(record)


def test_train_kind_killed_between_writing_and_reporting_a_checkpoint_loses_no_record(
    tmp_path: Path, kind_run: tuple[Path, MemoryReporter], mnist_data_dir: Path
) -> None:
    _, uninterrupted = kind_run
    died = DiesReportingCheckpoint(epoch=2)
    with pytest.raises(KeyboardInterrupt):
        run_train_kind(kind_spec(), context(tmp_path, mnist_data_dir, died))
    assert died.checkpoints == [] and checkpoint_path(tmp_path / "checkpoints", 2).is_file()
    resumed = MemoryReporter()
    run_train_kind(kind_spec(), context(tmp_path, mnist_data_dir, resumed))
    assert [(c.epoch, c.final) for c in resumed.checkpoints] == [(2, False), (3, True)]
    # what the store would have lost (a recorder holds an epoch's metrics until its checkpoint)
    assert resumed.metrics.keys() == uninterrupted.metrics.keys()
    assert all(resumed.metrics[k].value == uninterrupted.metrics[k].value
               for k in resumed.metrics)


def test_train_kind_cancelled_then_resumed_matches_an_uninterrupted_run(
    tmp_path: Path, kind_run: tuple[Path, MemoryReporter], mnist_data_dir: Path
) -> None:
    _, uninterrupted = kind_run
    cancelled = StopAfter(checks=9)  # 4 batches per epoch: stops in epoch 3, batch 2
    with pytest.raises(Cancelled):
        run_train_kind(kind_spec(), context(tmp_path, mnist_data_dir, cancelled))
    assert [c.epoch for c in cancelled.checkpoints] == [2] and not cancelled.evaluations
    resumed = MemoryReporter()
    run_train_kind(kind_spec(), context(tmp_path, mnist_data_dir, resumed))
    merged = {**cancelled.metrics, **resumed.metrics}
    assert merged.keys() == uninterrupted.metrics.keys()
    assert all(merged[k].value == uninterrupted.metrics[k].value for k in merged)
    assert without_timings(resumed.rows()) == without_timings(uninterrupted.rows())
