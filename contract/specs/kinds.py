"""The experiment kinds: one spec class per ``kind``, each the one registration of its kind.

A kind's class holds its fields, its ``title`` and its ``runner`` (``module:function`` of the
science's ``run(spec, ctx)``, imported only when a run executes). ``AnySpec`` lists them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, ClassVar, Literal, get_args

from pydantic import BeforeValidator, Field, field_validator, model_validator

from contract import catalog
from contract.datasets import DATASETS
from contract.limits import get_limits
from contract.specs.architecture import CheckpointSource, ModelConfig
from contract.specs.base import SpecBase
from contract.specs.data import DatasetConfig
from contract.specs.evaluation import EvaluationConfig
from contract.specs.training import AdversaryConfig, TrainingConfig
from contract.specs.values import (
    Count,
    EpochCount,
    Eps,
    ExampleCount,
    FeatureCount,
    Number,
    PositiveNumber,
    Strict,
    parse_number,
)
from contract.specs.visualize import VisualizeSpec

if TYPE_CHECKING:
    TheoryModelName = str
else:  # the catalog's names as a Literal: the same messages as a written-out Literal
    TheoryModelName = Literal[tuple(catalog.THEORY_MODELS)]

class TheoryDistribution(Strict):
    """D(p, d, eta) of Sec. 2.1: one robust feature x1 and d weak Gaussian features."""

    p: Annotated[float, BeforeValidator(parse_number)] = Field(
        0.7, description="Probability that x1 agrees with y."
    )
    d: FeatureCount = Field(1000, ge=1, description="Number of weakly correlated features x2..x_{d+1}.")
    eta: PositiveNumber = Field(0.15, description="Mean shift of the weak features (e.g. 4/sqrt(d)).")

    @field_validator("p")
    @classmethod
    def _p_open_interval(cls, value: float) -> float:
        if not 0.5 < value < 1:
            raise ValueError("must be in (0.5, 1)")
        return value


class TheorySpec(SpecBase):
    """E1: the paper's theory on D(p, d, eta) with linear classifiers, exact worst cases."""

    title: ClassVar[str] = "E1: theory on D(p, d, eta)"
    runner: ClassVar[str] = "workers.science.experiments.theory:run"
    kind: Literal["theory"]
    distribution: TheoryDistribution = TheoryDistribution()
    n_train: ExampleCount = Field(10_000, ge=2, description="Training sample size.")
    n_test: ExampleCount = Field(10_000, ge=2, description="Test sample size.")
    eps: list[Eps] = Field(
        default_factory=lambda: [0.3],
        min_length=1,
        description="l_inf radii, each used to train adversarially and to evaluate.",
    )
    models: list[TheoryModelName] = Field(
        default_factory=lambda: list(catalog.THEORY_MODELS), min_length=1
    )
    svm_c: PositiveNumber = Field(
        1.0,
        description="Soft-margin SVM regularisation (eq. 5): lambda = 1/(svm_c * n_train), "
        "as libsvm's C * sum(hinge) + ||w||^2/2.",
    )
    epochs: EpochCount = Field(300, ge=1, description="Full-batch optimisation steps for svm/logistic.")
    lr: PositiveNumber = Field(
        0.05, description="Adam step size for svm/logistic, cosine-decayed to 0 over the epochs."
    )

    @model_validator(mode="after")
    def _sample_fits(self) -> TheorySpec:
        """Each bound alone still allows n = 10**7 samples of d = 10**6 features (10**13
        floats); the sample (float32, both splits) must fit ``ROBUSTLAB_MAX_THEORY_VALUES``."""
        values = (self.n_train + self.n_test) * (self.distribution.d + 1)
        limit = get_limits().max_theory_values
        if values > limit:
            raise ValueError(f"(n_train + n_test) x (distribution.d + 1) = {values} sample values, "
                             f"more than {limit} (ROBUSTLAB_MAX_THEORY_VALUES)")
        return self


def _check_targets(evaluation: EvaluationConfig, dataset: DatasetConfig | None) -> None:
    """Targeted attacks need more classes than targets: checked where the dataset is known."""
    info = DATASETS.get(dataset.name) if dataset is not None else None
    if info is not None:
        evaluation.targets_fit(info.num_classes)


class TrainSpec(SpecBase):
    """Standard or PGD adversarial training of one model, then evaluation."""

    title: ClassVar[str] = "train one model, then evaluate it"
    runner: ClassVar[str] = "workers.science.experiments.train:run"
    kind: Literal["train"]
    dataset: DatasetConfig
    model: ModelConfig
    training: TrainingConfig = TrainingConfig()
    adversary: AdversaryConfig = AdversaryConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
    checkpoint_every: EpochCount = Field(1, ge=1, description="Epochs between checkpoints.")

    @model_validator(mode="after")
    def _targets_fit_the_classes(self) -> TrainSpec:
        _check_targets(self.evaluation, self.dataset)
        return self

    @model_validator(mode="after")
    def _selection_is_possible(self) -> TrainSpec:
        select = self.training.select
        if select != "final" and not self.dataset.validation:
            raise ValueError(f"training.select {select} needs a validation split: set "
                             "dataset.validation to a number of held-out training examples")
        if select == "best_robust" and \
                self.training.resolved_validation_attack(self.adversary) is None:
            raise ValueError("training.select best_robust needs a validation attack: the "
                             "training eps is 0, so set training.validation_attack "
                             "({kind: pgd, norm, eps, steps})")
        if "best" in (self.evaluation.checkpoints or []) and select == "final":
            raise ValueError("evaluation.checkpoints 'best' needs training.select best_robust "
                             "or best_clean (which defines the best epoch)")
        return self


class EvaluateSpec(SpecBase):
    """Attack a trained model: clean accuracy, each attack, and the per-example worst case."""

    title: ClassVar[str] = "attack a trained model"
    runner: ClassVar[str] = "workers.science.experiments.evaluate:run"
    kind: Literal["evaluate"]
    source: CheckpointSource
    dataset: DatasetConfig | None = Field(
        None, description="Default: the dataset the checkpoint was trained on."
    )
    evaluation: EvaluationConfig = EvaluationConfig()

    @model_validator(mode="after")
    def _targets_fit_the_classes(self) -> EvaluateSpec:
        _check_targets(self.evaluation, self.dataset)
        if self.evaluation.checkpoints is not None:
            raise ValueError("evaluation.checkpoints is for train runs; an evaluate run "
                             "attacks the one checkpoint its source names")
        if self.dataset is not None and self.dataset.validation is not None:
            raise ValueError("dataset.validation is for train runs")
        return self


BINARY_MNIST_PIXELS = 28 * 28
"""Input dimension of the linear classifier of E3 (one weight per binary-MNIST pixel)."""


class LinearFeaturesSpec(SpecBase):
    """E3: linear classifiers on binary MNIST, 5 vs 7 (Sec. 2.3, Table 4 and Figure 2).

    Trains f(x) = w.x + b with the logistic loss by full-batch gradient descent from w = 0,
    once normally and once against the exact l_inf worst case at ``eps`` (inside [0, 1]), and
    evaluates both exactly at ``eps`` on both splits (Table 4). Relates each pixel's weight to
    its correlation with the label (Fig. 2a, 2b), and trains standard models that may use only
    the ``topk`` pixels most correlated with the label (Fig. 2c).
    """

    title: ClassVar[str] = "E3: linear classifiers on binary MNIST"
    runner: ClassVar[str] = "workers.science.experiments.linear_features:run"
    kind: Literal["linear_features"]
    dataset: DatasetConfig = Field(
        default_factory=lambda: DatasetConfig(name="binary_mnist"),
        description="binary_mnist (-1 = '5', +1 = '7'); subsets allowed, no augmentation.",
    )
    epochs: EpochCount = Field(100, ge=1, description="Full-batch gradient-descent steps (paper: 100).")
    lr: PositiveNumber = Field(0.1, description="Gradient-descent step size (mean logistic loss).")
    eps: PositiveNumber = Field(
        0.2, description="l_inf radius of adversarial training and of the exact evaluation."
    )
    topk: list[Annotated[Count, Field(ge=1, le=BINARY_MNIST_PIXELS)]] = Field(
        default_factory=list,
        description="Fig. 2(c): for each k, standard training on only the k pixels of largest "
        "|correlation| with the label; empty: Table 4 and Fig. 2(a, b) only.",
    )
    correlation_threshold: Number = Field(
        0.3,
        gt=0,
        lt=1,
        description="Fig. 2(b): pixels with |Pearson correlation| below this count as weakly "
        "correlated; how much weight each model puts on them is reported.",
    )

    @field_validator("dataset")
    @classmethod
    def _binary_task(cls, value: DatasetConfig) -> DatasetConfig:
        if value.name != "binary_mnist":
            raise ValueError(
                f"linear_features needs the -1/+1 task binary_mnist, not {value.name!r}"
            )
        if value.augment:
            raise ValueError("full-batch gradient descent uses every image as it is: "
                             "augment must not be true")
        if value.validation is not None:
            raise ValueError("validation is for train runs")
        return value

    @field_validator("topk")
    @classmethod
    def _distinct(cls, value: list[int]) -> list[int]:
        repeated = sorted({k for k in value if value.count(k) > 1})
        if repeated:
            raise ValueError(f"topk values must be distinct; repeated: {repeated}")
        return value


AnySpec = Annotated[
    TheorySpec | TrainSpec | EvaluateSpec | VisualizeSpec | LinearFeaturesSpec,
    Field(discriminator="kind"),
]
"""Every experiment kind: the one list (a new kind is a class with ``kind``, ``title`` and
``runner``, added here)."""
SPEC_KINDS: dict[str, type[SpecBase]] = {
    model.model_fields["kind"].annotation.__args__[0]: model  # type: ignore[union-attr]
    for model in get_args(get_args(AnySpec)[0])
}
"""kind -> spec class, read off ``AnySpec``."""
