"""``kind: visualize`` (E4-E6): large-eps examples, interpolations and loss gradients."""

from __future__ import annotations

from typing import ClassVar, Literal, get_args

from pydantic import Field, model_validator

from contract.catalog import large_eps_radii
from contract.specs.architecture import ModelConfig
from contract.specs.base import SpecBase
from contract.specs.data import DatasetConfig
from contract.specs.scalars import RunIdText
from contract.specs.training import AdversaryConfig, TrainingConfig
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
)


class LargeEpsAttack(Strict):
    """Targeted PGD far outside the training ball (E4, Table 3), starting from the clean image."""

    norm: NormName = Field(description="Threat model: 'linf' or 'l2'.")
    eps: Eps = Field(description="Radius in pixel space; Table 3: MNIST linf 0.3, l2 4; "
                     "CIFAR-10 linf 32/255, l2 1200/255; Restricted ImageNet linf 0.25, l2 40.")
    steps: StepCount = Field(100, ge=1, description="PGD iterations towards the target class.")
    step_size: PositiveNumber | None = Field(None, description="Default 2.5 * eps / steps.")

    @property
    def resolved_step_size(self) -> float:
        return self.step_size if self.step_size is not None else 2.5 * self.eps / self.steps


class InRunTraining(Strict):
    """A model trained inside the visualisation run first (the blocks of a ``TrainSpec``)."""

    dataset: DatasetConfig | None = Field(
        None, description="Training data; default the visualisation's dataset (its train split)."
    )
    model: ModelConfig
    training: TrainingConfig = TrainingConfig()
    adversary: AdversaryConfig = AdversaryConfig()
    seed: Count | None = Field(None, ge=0, description="Training seed; default the spec's seed.")
    checkpoint_every: EpochCount = Field(1, ge=1, description="Epochs between checkpoints.")


class VisualizedModel(Strict):
    """A labelled model of a visualisation: an earlier run, a checkpoint file, or trained here."""

    label: str = Field(
        description="Short name shown in pictures and tags, e.g. 'standard', 'linf', 'l2'.",
        min_length=1, max_length=40, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$",
    )
    run: RunIdText | None = Field(
        None, description="Id of a train run whose final checkpoint is used.")
    checkpoint: str | None = Field(None, description="Path to a checkpoint file.")
    model: ModelConfig | None = Field(
        None, description="With checkpoint: the architecture of a foreign state_dict "
        "(arch, kwargs); robustlab's own checkpoints need none."
    )
    train: InRunTraining | None = Field(
        None, description="Train the model in this run (checkpointed, resumable)."
    )

    @model_validator(mode="after")
    def _exactly_one_source(self) -> VisualizedModel:
        given = [name for name in ("run", "checkpoint", "train") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(
                f"give exactly one of 'run', 'checkpoint' or 'train' (got {given or 'none'})"
            )
        if self.model is not None and self.checkpoint is None:
            raise ValueError("model goes with checkpoint (a run or a training says its model)")
        return self


VisualizationName = Literal["large_eps", "interpolation", "gradients"]


class VisualizeSpec(SpecBase):
    """E4-E6: large-eps adversarial examples, interpolations and loss gradients, side by side.

    Every model in ``models`` is visualised; ``independent`` (another model, e.g. a standard
    one trained with another seed) judges the large-eps examples: ``target_agreement`` is how
    often it sees the target class in them.
    """

    title: ClassVar[str] = "E4-E6: large-eps examples, interpolations, gradients"
    runner: ClassVar[str] = "workers.science.experiments.visualize:run"
    kind: Literal["visualize"]
    dataset: DatasetConfig
    split: Literal["test", "train"] = Field("test", description="Split the images come from.")
    models: list[VisualizedModel] = Field(
        min_length=1, description="The models shown side by side."
    )
    independent: VisualizedModel | None = Field(
        None, description="Judge of the large-eps examples (target_agreement); none: not measured."
    )
    show: list[VisualizationName] = Field(
        default_factory=lambda: list(get_args(VisualizationName)), min_length=1,
        description="What to compute: large_eps (E4), interpolation (E5), gradients (E6).",
    )
    n_images: ExampleCount = Field(10, ge=1, description="Images shown in the pictures (the first ones).")
    measure_images: ExampleCount = Field(
        500, ge=1, description="Images the measures average over (target_agreement, alignment)."
    )
    attacks: list[LargeEpsAttack] | None = Field(
        None, min_length=1, description="Large-eps attacks; default Table 3 of the dataset."
    )
    target: Literal["next", "random"] = Field(
        "next", description="Target class: 'next' is (y + 1) mod K, 'random' a seeded other class."
    )
    interpolation_points: StepCount = Field(
        8, ge=2, description="Images from the image to its large-eps example, both included."
    )
    batch_size: BatchSize = Field(250, ge=1)

    @model_validator(mode="after")
    def _consistent_models(self) -> VisualizeSpec:
        labels = [m.label for m in self.models]
        if self.independent is not None:
            labels.append(self.independent.label)
        repeated = sorted({label for label in labels if labels.count(label) > 1})
        if repeated:
            raise ValueError(f"model labels must be unique; repeated: {', '.join(repeated)}")
        if self.measure_images < self.n_images:
            raise ValueError("measure_images must be at least n_images (shown images are measured)")
        if self.attacks is None and not large_eps_radii(self.dataset.name):
            raise ValueError(f"Table 3 gives no large-eps radii for {self.dataset.name!r}: list "
                             "the attacks (attacks: [{norm: linf, eps: ...}])")
        blocks = [m.train for m in [*self.models, self.independent] if m is not None and m.train]
        if self.dataset.validation is not None or any(
                block.dataset is not None and block.dataset.validation is not None
                for block in blocks):
            raise ValueError("dataset.validation is for train runs: a visualize run shows "
                             "models, it selects no checkpoint")
        twin = self._twin_of_independent()
        if twin is not None:
            raise ValueError(
                f"independent trains exactly like model {twin!r}: give it another seed"
            )
        return self

    def _twin_of_independent(self) -> str | None:
        """The label of a model trained exactly like ``independent`` (same data, seed), if any."""
        if self.independent is None or self.independent.train is None:
            return None
        judge = self._resolved(self.independent.train)
        for candidate in self.models:
            if candidate.train is not None and self._resolved(candidate.train) == judge:
                return candidate.label
        return None

    def _resolved(self, training: InRunTraining) -> InRunTraining:
        """``training`` with its defaults (dataset, seed) filled in from this spec."""
        seed = self.seed if training.seed is None else training.seed
        dataset = training.dataset or self.dataset
        return training.model_copy(update={"seed": seed, "dataset": dataset})
