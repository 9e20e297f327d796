"""The spec language: one Pydantic model per experiment kind, the single source of truth.

The CLI, the dashboard, the Celery tasks and the science code all take the validated objects
defined here. Every field, its default and its documentation live in this module; the JSON
Schema in ``specs/schema.json`` is exported from it (``robustlab schema``).

Adding an experiment kind is a local change: write a ``*Spec`` class with a ``kind`` literal
and add it to ``AnySpec``.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

_FRACTION = re.compile(r"^\s*([-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)\s*/\s*(\d+(?:\.\d*)?)\s*$")
_NUMBER = re.compile(r"^\s*[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?\s*$")


def parse_number(value: Any) -> Any:
    """Accept ``8/255`` and ``1e-3`` (which PyYAML's safe loader reads as strings) without eval."""
    if isinstance(value, bool):
        return value  # let pydantic reject booleans where a number is meant
    if isinstance(value, str):
        match = _FRACTION.match(value)
        if match:
            denominator = float(match.group(2))
            if denominator == 0:
                raise ValueError("division by zero")
            return float(match.group(1)) / denominator
        if _NUMBER.match(value):
            return float(value)
        raise ValueError(f"{value!r} is not a number (write e.g. 0.3, 8/255 or 1e-3)")
    return value


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError("must be a finite number")
    return value


Number = Annotated[float, BeforeValidator(parse_number)]
"""A float that may be written as ``8/255`` or ``1e-3`` in YAML."""
Eps = Annotated[float, BeforeValidator(parse_number), Field(ge=0)]
"""A perturbation radius in pixel space ([0, 1] images) or feature space (theory)."""
PositiveNumber = Annotated[float, BeforeValidator(parse_number), Field(gt=0)]

NormName = Literal["linf", "l2"]
DatasetName = Literal["binary_mnist", "mnist", "fashion_mnist", "cifar10", "restricted_imagenet"]
"""Kept equal to ``workers.science.datasets.DATASETS`` (a test checks)."""
ArchName = Literal["linear", "mnist_cnn", "cifar_resnet", "resnet50"]
"""Kept equal to ``workers.science.models.MODELS`` (a test checks)."""
TheoryModelName = Literal["averaging", "svm", "logistic"]
"""Kept equal to ``workers.science.theory.THEORY_MODELS`` (a test checks)."""


class Strict(BaseModel):
    """Base of every spec model: unknown keys are errors, never silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


# --------------------------------------------------------------------------- attacks


class PGDAttack(Strict):
    """Projected gradient descent (Madry et al. 2018) inside an l_inf or l_2 ball in [0, 1]."""

    kind: Literal["pgd"] = "pgd"
    norm: NormName = Field(description="Threat model: 'linf' or 'l2'.")
    eps: Eps = Field(description="Radius of the ball in pixel space, e.g. 0.3 or 8/255.")
    steps: int = Field(40, ge=1, description="Number of PGD iterations.")
    step_size: PositiveNumber | None = Field(
        None, description="Step size; default 2.5 * eps / steps (Madry et al.)."
    )
    restarts: int = Field(1, ge=1, description="Random restarts; the worst case per example is kept.")
    random_start: bool = Field(True, description="Start from a uniform point in the ball.")

    @property
    def resolved_step_size(self) -> float:
        return self.step_size if self.step_size is not None else 2.5 * self.eps / self.steps


class FGSMAttack(Strict):
    """Fast gradient sign method (Goodfellow et al. 2015), one l_inf step of size eps."""

    kind: Literal["fgsm"] = "fgsm"
    norm: Literal["linf"] = "linf"
    eps: Eps


class ExactLinearAttack(Strict):
    """The closed-form worst case for a linear model (exact, no iterations)."""

    kind: Literal["exact_linear"] = "exact_linear"
    norm: NormName
    eps: Eps


Attack = Annotated[PGDAttack | FGSMAttack | ExactLinearAttack, Field(discriminator="kind")]


# --------------------------------------------------------------------------- common parts


class SpecBase(Strict):
    """Fields every experiment kind has."""

    name: str = Field(
        description="Experiment name: groups runs in the database (letters, digits, '_', '-', '.').",
        min_length=1,
        max_length=120,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$",
    )
    description: str = Field("", description="Free text shown in the dashboard and the report.")
    seed: int = Field(0, ge=0, description="Seed for every random number generator of the run.")
    device: str = Field(
        "auto", description="'auto' (CUDA when present), 'cpu', 'cuda' or 'cuda:N'."
    )
    sweep: dict[str, list[Any]] = Field(
        default_factory=dict,
        description="Dotted field paths mapped to lists of values: one run per grid cell.",
    )

    @field_validator("device")
    @classmethod
    def _check_device(cls, value: str) -> str:
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?|mps", value):
            raise ValueError("must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'")
        return value

    @field_validator("sweep")
    @classmethod
    def _check_sweep(cls, value: dict[str, list[Any]]) -> dict[str, list[Any]]:
        for path, values in value.items():
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)*", path):
                raise ValueError(f"sweep key {path!r} is not a dotted field path")
            if path.split(".")[0] in {"name", "kind", "sweep"}:
                raise ValueError(f"sweep cannot vary {path!r}")
            if not values:
                raise ValueError(f"sweep over {path!r} has no values")
        return value


class DatasetConfig(Strict):
    """Which data to use and how much of it."""

    name: DatasetName
    root: str | None = Field(
        None, description="Data directory; default ROBUSTLAB_DATA_DIR/<name> (see `robustlab data`)."
    )
    train_subset: int | None = Field(None, ge=1, description="Use only the first N training examples.")
    test_subset: int | None = Field(None, ge=1, description="Use only the first N test examples.")
    augment: bool | None = Field(
        None, description="Training augmentation; default per dataset (crops/flips for CIFAR-10 and ImageNet)."
    )
    download: bool = Field(False, description="Let torchvision download the data when online.")


class ModelConfig(Strict):
    arch: ArchName = Field(description="Architecture from the model registry.")


class OptimizerConfig(Strict):
    name: Literal["sgd", "adam"] = "sgd"
    lr: PositiveNumber = 0.1
    momentum: Annotated[float, BeforeValidator(parse_number), Field(ge=0, lt=1)] = 0.9
    weight_decay: Annotated[float, BeforeValidator(parse_number), Field(ge=0)] = 5e-4


class ScheduleConfig(Strict):
    """Learning-rate schedule, stepped once per epoch."""

    kind: Literal["constant", "step", "multistep", "cosine"] = "constant"
    step_size: int = Field(30, ge=1, description="Epochs between decays (kind 'step').")
    milestones: list[int] = Field(default_factory=list, description="Epochs of decay (kind 'multistep').")
    gamma: Annotated[float, BeforeValidator(parse_number), Field(gt=0, le=1)] = 0.1


class AdversaryConfig(Strict):
    """The training adversary: PGD from a random start (Madry et al.). eps 0 is standard training."""

    norm: NormName = "linf"
    eps: Eps = Field(0.0, description="Training radius; 0 means standard training.")
    steps: int = Field(7, ge=1)
    step_size: PositiveNumber | None = Field(None, description="Default 2.5 * eps / steps.")
    random_start: bool = True
    ramp_epochs: int = Field(
        0, ge=0, description="Grow eps linearly from 0 over this many epochs (eps ramp-up)."
    )

    @property
    def resolved_step_size(self) -> float:
        return self.step_size if self.step_size is not None else 2.5 * self.eps / self.steps


class TrainingConfig(Strict):
    epochs: int = Field(10, ge=1)
    batch_size: int = Field(128, ge=1)
    optimizer: OptimizerConfig = OptimizerConfig()
    schedule: ScheduleConfig = ScheduleConfig()


class EvaluationConfig(Strict):
    """Attacks run on the test split after training (or on a checkpoint)."""

    attacks: list[Attack] = Field(default_factory=list)
    batch_size: int = Field(256, ge=1)
    split: Literal["test", "train"] = "test"
    subset: int | None = Field(None, ge=1, description="Evaluate the first N examples only.")
    checks: bool = Field(
        True, description="Run the validity checks (eps 0, more steps, FGSM, very large eps)."
    )


# --------------------------------------------------------------------------- kinds


class TheoryDistribution(Strict):
    """D(p, d, eta) of Sec. 2.1: one robust feature x1 and d weak Gaussian features."""

    p: Annotated[float, BeforeValidator(parse_number)] = Field(
        0.7, description="Probability that x1 agrees with y."
    )
    d: int = Field(1000, ge=1, description="Number of weakly correlated features x2..x_{d+1}.")
    eta: PositiveNumber = Field(0.15, description="Mean shift of the weak features (e.g. 4/sqrt(d)).")

    @field_validator("p")
    @classmethod
    def _p_open_interval(cls, value: float) -> float:
        if not 0.5 < value < 1:
            raise ValueError("must be in (0.5, 1)")
        return value


class TheorySpec(SpecBase):
    """E1: the paper's theory on D(p, d, eta) with linear classifiers, exact worst cases."""

    kind: Literal["theory"]
    distribution: TheoryDistribution = TheoryDistribution()
    n_train: int = Field(10_000, ge=2, description="Training sample size.")
    n_test: int = Field(10_000, ge=2, description="Test sample size.")
    eps: list[Eps] = Field(
        default_factory=lambda: [0.3],
        min_length=1,
        description="l_inf radii, each used to train adversarially and to evaluate.",
    )
    models: list[TheoryModelName] = Field(
        default_factory=lambda: ["averaging", "svm", "logistic"], min_length=1
    )
    svm_c: PositiveNumber = Field(
        1.0,
        description="Soft-margin SVM regularisation (eq. 5): lambda = 1/(svm_c * n_train), "
        "as libsvm's C * sum(hinge) + ||w||^2/2.",
    )
    epochs: int = Field(300, ge=1, description="Full-batch optimisation steps for svm/logistic.")
    lr: PositiveNumber = Field(
        0.05, description="Adam step size for svm/logistic, cosine-decayed to 0 over the epochs."
    )


class TrainSpec(SpecBase):
    """Standard or PGD adversarial training of one model, then evaluation."""

    kind: Literal["train"]
    dataset: DatasetConfig
    model: ModelConfig
    training: TrainingConfig = TrainingConfig()
    adversary: AdversaryConfig = AdversaryConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
    checkpoint_every: int = Field(1, ge=1, description="Epochs between checkpoints.")


class CheckpointSource(Strict):
    """Exactly one of a checkpoint file or the id of a run that trained one."""

    checkpoint: str | None = Field(None, description="Path to a checkpoint file.")
    run: str | None = Field(None, description="Run id whose final checkpoint is used.")

    @model_validator(mode="after")
    def _exactly_one(self) -> CheckpointSource:
        if (self.checkpoint is None) == (self.run is None):
            raise ValueError("give exactly one of 'checkpoint' or 'run'")
        return self


class EvaluateSpec(SpecBase):
    """Attack a trained model: clean accuracy, each attack, and the per-example worst case."""

    kind: Literal["evaluate"]
    source: CheckpointSource
    dataset: DatasetConfig | None = Field(
        None, description="Default: the dataset the checkpoint was trained on."
    )
    evaluation: EvaluationConfig = EvaluationConfig()


AnySpec = Annotated[TheorySpec | TrainSpec | EvaluateSpec, Field(discriminator="kind")]
SPEC_KINDS: dict[str, type[SpecBase]] = {
    "theory": TheorySpec,
    "train": TrainSpec,
    "evaluate": EvaluateSpec,
}
