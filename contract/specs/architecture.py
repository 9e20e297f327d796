"""``model:`` and ``source:``: an architecture by name, and where trained weights come from."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, Field, model_validator

from contract import catalog
from contract.specs.scalars import RunIdText
from contract.specs.training import TrainingMethodName
from contract.specs.values import ADDED_LATER, Eps, NormName, Strict


def _known_arch(value: str) -> str:
    try:
        return catalog.check_arch(value)
    except catalog.UnknownName as exc:
        raise ValueError(str(exc)) from None


ArchName = Annotated[
    str,
    AfterValidator(_known_arch),
    Field(
        description="Architecture: a built-in (" + ", ".join(catalog.MODELS) + "), "
        "'torchvision:<name>', 'timm:<name>' (pip install 'robustlab[timm]'), or the name of an "
        f"installed plugin's entry point in the group '{catalog.MODEL_GROUP}' (plugins add more).",
        json_schema_extra={"examples": list(catalog.MODELS)},
    ),
]
"""A model name resolved against the catalog (``catalog.check_arch``)."""


class ModelConfig(Strict):
    """An architecture by name and the keyword arguments of its builder."""

    arch: ArchName
    kwargs: dict[str, Any] = Field(
        default_factory=dict,
        description="Keyword arguments of the builder, e.g. {width: 64} for a plugin or "
        "{weights: IMAGENET1K_V1} for torchvision (online).",
    )


class TrainedWith(Strict):
    """How a checkpoint trained elsewhere was trained, as its user declares it."""

    norm: NormName | None = Field(None, description="The training adversary's norm.")
    eps: Eps | None = Field(None, description="The training radius; 0 is standard training.")
    method: TrainingMethodName | None = Field(
        None, description="The training method (pgd, trades, fgsm_rs, or a plugin's).")


class CheckpointSource(Strict):
    """Exactly one of a checkpoint file or the id of a run that trained one.

    A file written elsewhere (a bare state_dict, or one under ``state_dict``, ``model_state_dict``,
    ``model`` or ``net``) needs ``model``: the architecture to load it into. robustlab's own
    checkpoints say what they hold, so ``model`` may be left out for them.
    """

    checkpoint: str | None = Field(None, description="Path to a checkpoint file.")
    run: RunIdText | None = Field(None, description="Run id whose final checkpoint is used.")
    model: ModelConfig | None = Field(
        None, description="With checkpoint: the architecture of a foreign state_dict "
        "(arch, kwargs); robustlab's own checkpoints need none."
    )
    trained_with: Annotated[TrainedWith | None, ADDED_LATER] = Field(
        None, description="With checkpoint: how a checkpoint trained elsewhere was trained "
        "(norm, eps, method), recorded as declared; without it, its result rows say unknown "
        "(null). robustlab's own checkpoints say it themselves."
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> CheckpointSource:
        if (self.checkpoint is None) == (self.run is None):
            raise ValueError("give exactly one of 'checkpoint' or 'run'")
        if self.model is not None and self.checkpoint is None:
            raise ValueError("model goes with checkpoint (a run's checkpoint says its model)")
        if self.trained_with is not None and self.checkpoint is None:
            raise ValueError("trained_with goes with checkpoint (a run's checkpoint says how "
                             "it was trained)")
        return self
