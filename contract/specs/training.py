"""``training:`` and ``adversary:``: how a model is trained, and against which adversary."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BeforeValidator, Field, model_validator

from contract import catalog
from contract.specs.attacks import PGDAttack
from contract.specs.values import (
    ADDED_LATER,
    BatchSize,
    Count,
    EpochCount,
    Eps,
    ExampleCount,
    NormName,
    PositiveNumber,
    StepCount,
    Strict,
    parse_number,
)


class OptimizerConfig(Strict):
    name: Literal["sgd", "adam"] = "sgd"
    lr: PositiveNumber = 0.1
    momentum: Annotated[float, BeforeValidator(parse_number), Field(ge=0, lt=1)] = 0.9
    weight_decay: Annotated[float, BeforeValidator(parse_number), Field(ge=0)] = 5e-4
    nesterov: Annotated[bool, ADDED_LATER] = Field(
        False, description="sgd: Nesterov momentum (needs momentum > 0).")

    @model_validator(mode="after")
    def _nesterov_fits(self) -> OptimizerConfig:
        if self.nesterov and (self.name != "sgd" or self.momentum == 0):
            raise ValueError("nesterov needs name: sgd and momentum > 0")
        return self


PER_ITERATION_KINDS = ("one_cycle", "piecewise")
"""Schedule kinds whose learning rate changes at every optimiser step (the others per epoch)."""

FractionalEpoch = Annotated[float, BeforeValidator(parse_number), Field(ge=0)]
LearningRate = Annotated[float, BeforeValidator(parse_number), Field(ge=0)]


class ScheduleConfig(Strict):
    """Learning-rate schedule.

    ``constant``, ``step``, ``multistep`` and ``cosine`` step once per epoch (as they always
    did). ``one_cycle`` and ``piecewise`` set the rate before every optimiser step k = 1..T
    (T = epochs x batches per epoch) from the fractional epoch t = k / batches_per_epoch, as
    Wong et al.'s and Rice et al.'s code do: ``one_cycle`` rises linearly from 0 to
    ``optimizer.lr`` at t = peak x epochs, then falls linearly to 0 at the last step;
    ``piecewise`` interpolates ``points`` linearly (constant before the first and after the
    last; two points at the same epoch make a drop there). ``warmup_epochs`` W > 0 multiplies
    any kind's rate by min(1, k / (W x batches_per_epoch)).
    """

    kind: Literal["constant", "step", "multistep", "cosine", "one_cycle", "piecewise"] = "constant"
    step_size: EpochCount = Field(30, ge=1, description="Epochs between decays (kind 'step').")
    milestones: list[EpochCount] = Field(default_factory=list, description="Epochs of decay (kind 'multistep').")
    gamma: Annotated[float, BeforeValidator(parse_number), Field(gt=0, le=1)] = 0.1
    peak: Annotated[float, BeforeValidator(parse_number), ADDED_LATER] = Field(
        0.4, description="one_cycle: the fraction of all steps at which the rate peaks, in (0, 1).")
    points: Annotated[list[tuple[FractionalEpoch, LearningRate]], ADDED_LATER] = Field(
        default_factory=list, description="piecewise: [[epoch, lr], ...], epochs not decreasing; "
        "the rate is interpolated linearly per step (e.g. [[0, 0.1], [100, 0.1], [100, 0.01]] "
        "drops tenfold at epoch 100).")
    warmup_epochs: Annotated[float, BeforeValidator(parse_number), ADDED_LATER] = Field(
        0.0, description="Linear per-step warm-up from 0 over this many epochs, for any kind.")

    @model_validator(mode="after")
    def _shape_fits_the_kind(self) -> ScheduleConfig:
        if not 0 < self.peak < 1:
            raise ValueError(f"peak must be in (0, 1), got {self.peak}")
        if self.warmup_epochs < 0:
            raise ValueError(f"warmup_epochs must be >= 0, got {self.warmup_epochs}")
        if self.kind == "piecewise" and not self.points:
            raise ValueError("kind piecewise needs points: [[epoch, lr], ...]")
        if self.points and self.kind != "piecewise":
            raise ValueError(f"points are for kind piecewise, not {self.kind!r}")
        epochs = [epoch for epoch, _ in self.points]
        if any(later < earlier for earlier, later in zip(epochs, epochs[1:], strict=False)):
            raise ValueError(f"points must not decrease in epoch, got epochs {epochs}")
        return self

    @property
    def per_iteration(self) -> bool:
        """Whether the rate changes within an epoch (a per-step kind, or a warm-up)."""
        return self.kind in PER_ITERATION_KINDS or self.warmup_epochs > 0


def _amp_off(value: Any) -> Any:
    """YAML reads an unquoted ``off`` as the boolean false: take it for 'off'."""
    if value is False:
        return "off"
    if value is True:
        raise ValueError("write 'off', 'bf16' or 'fp16' (YAML reads on/yes/true as a boolean)")
    return value


if TYPE_CHECKING:
    TrainingMethodName = str
else:  # the registry's names (built-ins and installed plugins) as a Literal: same messages
    TrainingMethodName = Literal[tuple(catalog.training_methods())]


class AdversaryConfig(Strict):
    """The training adversary. eps 0 is standard training, whatever the method.

    - ``pgd`` (Madry et al. 2018): train on the last iterate of PGD from a random start.
    - ``trades`` (Zhang et al. 2019): CE(f(x), y) + beta * KL(f(x) || f(x')), x' maximising the
      KL by PGD from x + 0.001 * N(0, 1); beta moves the model along the trade-off.
    - ``fgsm_rs`` (Wong et al. 2020, "fast is better than free"): one FGSM step of
      1.25 * eps from a uniform random start, projected; ``steps`` is not used.
    """

    method: TrainingMethodName = Field(
        "pgd", description="'pgd' (Madry et al.), 'trades' (Zhang et al.) or 'fgsm_rs' "
        "(Wong et al.'s fast adversarial training)."
    )
    norm: NormName = "linf"
    eps: Eps = Field(0.0, description="Training radius; 0 means standard training.")
    steps: StepCount = Field(7, ge=1, description="Attack iterations (pgd, trades; fgsm_rs: 1).")
    step_size: PositiveNumber | None = Field(
        None, description="Default 2.5 * eps / steps (pgd, trades) or 1.25 * eps (fgsm_rs)."
    )
    random_start: bool = Field(
        True, description="pgd: start from a uniform point of the ball (trades always starts "
        "at x + 0.001 * N(0, 1), fgsm_rs always from a uniform point)."
    )
    ramp_epochs: EpochCount = Field(
        0, ge=0, description="Grow eps linearly from 0 over this many epochs (eps ramp-up)."
    )
    beta: Annotated[float, BeforeValidator(parse_number), Field(ge=0)] = Field(
        6.0, description="trades: weight of the KL (robustness) term; 0 is standard training, "
        "Zhang et al. use 1 to 6. Ignored by the other methods."
    )
    overfit_check: bool = Field(
        True, description="fgsm_rs: after every epoch, attack the first overfit_check_examples "
        "training examples with PGD; stop the run when their robust accuracy falls by more than "
        "overfit_check_drop below the best so far (catastrophic overfitting, Wong et al.)."
    )
    overfit_check_examples: ExampleCount = Field(512, ge=1)
    overfit_check_steps: StepCount = Field(10, ge=1, description="PGD steps of the check.")
    overfit_check_drop: Annotated[float, BeforeValidator(parse_number), Field(gt=0, le=1)] = 0.2

    @property
    def resolved_step_size(self) -> float:
        if self.step_size is not None:
            return self.step_size
        if self.method == "fgsm_rs":
            return 1.25 * self.eps
        return 2.5 * self.eps / self.steps

    @property
    def attack_steps(self) -> int:
        """Gradient steps of the inner maximisation: ``steps``, or 1 for fgsm_rs."""
        return 1 if self.method == "fgsm_rs" else self.steps


class TrainingConfig(Strict):
    """How to train: epochs, batches, optimiser, and how the hardware is used.

    ``amp``, ``channels_last`` and the loader settings change speed, not the experiment; they
    are in the spec (and its hash) because they change the numbers in their last bits.
    Exact resume (bitwise equal to an uninterrupted run) holds for every setting on the CPU
    with 0 loader workers; see README "Exact resume" for the others.
    """

    epochs: EpochCount = Field(10, ge=1)
    batch_size: BatchSize = Field(128, ge=1)
    optimizer: OptimizerConfig = OptimizerConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    amp: Annotated[Literal["off", "bf16", "fp16"], BeforeValidator(_amp_off)] = Field(
        "off", description="Mixed precision of the training and attack passes: autocast to "
        "bf16 or fp16 (fp16 with a gradient scaler); 'off' is float32."
    )
    channels_last: bool | None = Field(
        None, description="NHWC memory format for conv nets; default: on for CUDA, off elsewhere."
    )
    num_workers: Count | None = Field(
        None, ge=0, description="DataLoader worker processes; default 0 for in-memory datasets "
        "(MNIST, Fashion-MNIST, CIFAR-10), min(8, CPUs) for image folders (ImageNet)."
    )
    pin_memory: bool | None = Field(None, description="Pinned host batches; default on for CUDA.")
    persistent_workers: bool | None = Field(
        None, description="Keep loader workers between epochs; default on when num_workers > 0."
    )
    ema: Annotated[float | None, BeforeValidator(parse_number), ADDED_LATER] = Field(
        None, description="Decay of an exponential moving average of the weights, updated after "
        "every optimiser step (BatchNorm statistics copied), e.g. 0.995; null: off. When set, "
        "validation, selection, evaluation and export use the averaged weights.")
    select: Annotated[Literal["final", "best_robust", "best_clean"], ADDED_LATER] = Field(
        "final", description="Which epoch's weights the run stands for: the last ('final'), or "
        "the epoch of the best validation robust or clean accuracy (needs dataset.validation).")
    validation_attack: Annotated[PGDAttack | None, ADDED_LATER] = Field(
        None, description="The attack of val_robust_accuracy: {kind: pgd, norm, eps, steps}; "
        "default PGD-10 at the training adversary's norm and eps.")

    @model_validator(mode="after")
    def _ema_decay(self) -> TrainingConfig:
        if self.ema is not None and not 0 < self.ema < 1:
            raise ValueError(f"ema is a decay in (0, 1), got {self.ema}")
        return self

    def resolved_validation_attack(self, adversary: AdversaryConfig) -> PGDAttack | None:
        """The validation attack, or None when there is none (training eps 0, none given)."""
        if self.validation_attack is not None:
            return self.validation_attack
        if adversary.eps <= 0:
            return None
        return PGDAttack(norm=adversary.norm, eps=adversary.eps, steps=VALIDATION_PGD_STEPS)


VALIDATION_PGD_STEPS = 10
"""Steps of the default validation attack (Rice et al. select on PGD-10)."""
