"""``dataset:``: which data a run uses and how much of it."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, model_validator

from contract import catalog
from contract.datasets import DATASET_FORMATS, DATASETS
from contract.specs.values import (
    ADDED_LATER,
    ExampleCount,
    ImageSize,
    Number,
    PositiveNumber,
    Strict,
)


def _known_dataset(value: str) -> str:
    try:
        return catalog.check_dataset(value)
    except catalog.UnknownName as exc:
        raise ValueError(str(exc)) from None


DatasetName = Annotated[
    str,
    AfterValidator(_known_dataset),
    Field(
        description="Dataset: a built-in (" + ", ".join(DATASETS) + "), a lab's own "
        "files (" + ", ".join(DATASET_FORMATS) + "), or the name of an installed "
        f"plugin's entry point in the group '{catalog.DATASET_GROUP}' (plugins add more).",
        json_schema_extra={"examples": [*DATASETS, *DATASET_FORMATS]},
    ),
]
"""A dataset name resolved against the catalog (``catalog.check_dataset``)."""


class NormalizationConfig(Strict):
    """Per-channel mean and std the model normalises its [0, 1] inputs with."""

    mean: list[Number] = Field(min_length=1, description="One value per channel, e.g. [0.5].")
    std: list[PositiveNumber] = Field(min_length=1, description="One value per channel, > 0.")

    @model_validator(mode="after")
    def _same_length(self) -> NormalizationConfig:
        if len(self.mean) != len(self.std):
            raise ValueError(f"mean has {len(self.mean)} values but std has {len(self.std)}")
        return self


class DatasetConfig(Strict):
    """Which data to use and how much of it."""

    name: DatasetName
    root: str | None = Field(
        None, description="Data directory; default ROBUSTLAB_DATA_DIR/<name> (see `robustlab data`). "
        "image_folder: the folder holding train/ and test/ (or val/); npz: the .npz file."
    )
    train_subset: ExampleCount | None = Field(None, ge=1, description="Use only the first N training examples.")
    test_subset: ExampleCount | None = Field(None, ge=1, description="Use only the first N test examples.")
    validation: Annotated[ExampleCount | None, ADDED_LATER] = Field(
        None, ge=1, description="Hold out N of the training examples in use (after train_subset) "
        "as a validation split, chosen by the seed and never trained on (train kind).")
    augment: bool | None = Field(
        None, description="Training augmentation; default per dataset (crops/flips for CIFAR-10 "
        "and ImageNet; image_folder: random crop and flip when true, default off)."
    )
    download: bool = Field(False, description="Let torchvision download the data when online.")
    image_size: ImageSize | None = Field(
        None, ge=1, description="image_folder only: resize the shorter side, then centre-crop to "
        "a square of this size; default: the images' own size (all must then be equal)."
    )
    channels: Literal[1, 3] | None = Field(
        None, description="image_folder only: 1 (grey) or 3 (RGB, the default)."
    )
    normalization: NormalizationConfig | None = Field(
        None, description="image_folder, npz and plugins: the normalisation inside the model; "
        "default none (the model sees [0, 1] pixels). Built-in datasets have their own."
    )
    kwargs: dict[str, Any] = Field(
        default_factory=dict, description="Plugin datasets only: passed to the plugin's loader."
    )

    @model_validator(mode="after")
    def _fields_fit_the_dataset(self) -> DatasetConfig:
        own_files = self.name in DATASET_FORMATS
        builtin = self.name in DATASETS
        if own_files and self.root is None:
            raise ValueError(f"dataset {self.name!r} needs root: the "
                             + ("folder holding train/ and test/" if self.name == "image_folder"
                                else ".npz file"))
        if self.name != "image_folder":
            for key in ("image_size", "channels"):
                if getattr(self, key) is not None:
                    raise ValueError(f"{key} is for image_folder only, not {self.name!r}")
        if builtin and self.normalization is not None:
            raise ValueError(f"{self.name} has its own normalisation; normalization is for "
                             "image_folder, npz and plugin datasets")
        if (builtin or own_files) and self.kwargs:
            raise ValueError(f"kwargs are for plugin datasets only, not {self.name!r}")
        if self.validation is not None and self.train_subset is not None \
                and self.validation >= self.train_subset:
            raise ValueError(f"validation {self.validation} leaves none of the train_subset "
                             f"{self.train_subset} examples to train on")
        if self.normalization is not None and self.channels is not None \
                and len(self.normalization.mean) != self.channels:
            raise ValueError(f"normalization has {len(self.normalization.mean)} values per "
                             f"statistic but channels is {self.channels}")
        return self
