"""``training:`` and ``adversary:``: how a model is trained, and against which adversary."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BeforeValidator, Field

from contract import catalog
from contract.specs.values import (
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


class ScheduleConfig(Strict):
    """Learning-rate schedule, stepped once per epoch."""

    kind: Literal["constant", "step", "multistep", "cosine"] = "constant"
    step_size: EpochCount = Field(30, ge=1, description="Epochs between decays (kind 'step').")
    milestones: list[EpochCount] = Field(default_factory=list, description="Epochs of decay (kind 'multistep').")
    gamma: Annotated[float, BeforeValidator(parse_number), Field(gt=0, le=1)] = 0.1


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
