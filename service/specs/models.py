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
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from service.settings import get_settings
from service.specs import catalog

_FRACTION = re.compile(r"^\s*([-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)\s*/\s*(\d+(?:\.\d*)?)\s*$")
_NUMBER = re.compile(r"^\s*[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?\s*$")


def parse_number(value: Any) -> Any:
    """Accept ``8/255`` and ``1e-3`` (which PyYAML's safe loader reads as strings) without eval."""
    if isinstance(value, bool):
        raise ValueError(f"{str(value).lower()} is not a number")
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


def _not_boolean(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError(f"{str(value).lower()} is not a whole number")
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
MAX_INT64 = 2**63 - 1
"""Every whole number of a spec fits a signed 64-bit integer (the store's BIGINT, torch's seed)."""

Count = Annotated[int, BeforeValidator(_not_boolean), Field(le=MAX_INT64)]
"""A whole number. YAML reads ``yes``/``true`` as a boolean, which pydantic's lax mode would take
for 1 (``epochs: yes`` training one epoch): refused here. At most 2**63 - 1."""


def _at_most(setting: str) -> AfterValidator:
    """An upper bound read from ``Settings.<setting>`` when a spec is validated.

    Read at validation time, not at import, so a deployment sets ``ROBUSTLAB_<SETTING>`` and
    the schema stays the same everywhere. To bound a new field, annotate it with one of the
    aliases below, or ``Annotated[Count, _at_most("max_...")]`` after adding the setting.
    """
    variable = f"ROBUSTLAB_{setting.upper()}"

    def check(value: int) -> int:
        limit: int = getattr(get_settings(), setting)
        if value > limit:
            raise ValueError(f"must be <= {limit} (the limit {variable}; got {value})")
        return value

    return AfterValidator(check)


ExampleCount = Annotated[Count, _at_most("max_examples")]
"""How many examples (samples, subsets, images); at most ``ROBUSTLAB_MAX_EXAMPLES``."""
FeatureCount = Annotated[Count, _at_most("max_features")]
BatchSize = Annotated[Count, _at_most("max_batch_size")]
EpochCount = Annotated[Count, _at_most("max_epochs")]
"""Epochs, full-batch steps and epoch intervals; at most ``ROBUSTLAB_MAX_EPOCHS``."""
StepCount = Annotated[Count, _at_most("max_steps")]
"""Attack iterations; at most ``ROBUSTLAB_MAX_STEPS``."""
RestartCount = Annotated[Count, _at_most("max_restarts")]
QueryCount = Annotated[Count, _at_most("max_queries")]
"""A black-box attack's query budget; at most ``ROBUSTLAB_MAX_QUERIES``."""
ImageSize = Annotated[Count, _at_most("max_image_size")]

NormName = Literal["linf", "l2"]
"""The keys of ``catalog.NORMS`` (checked at import, below)."""


def _known_arch(value: str) -> str:
    try:
        return catalog.check_arch(value)
    except catalog.UnknownName as exc:
        raise ValueError(str(exc)) from None


def _known_dataset(value: str) -> str:
    try:
        return catalog.check_dataset(value)
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
DatasetName = Annotated[
    str,
    AfterValidator(_known_dataset),
    Field(
        description="Dataset: a built-in (" + ", ".join(catalog.DATASETS) + "), a lab's own "
        "files (" + ", ".join(catalog.DATASET_FORMATS) + "), or the name of an installed "
        f"plugin's entry point in the group '{catalog.DATASET_GROUP}' (plugins add more).",
        json_schema_extra={"examples": [*catalog.DATASETS, *catalog.DATASET_FORMATS]},
    ),
]
"""A dataset name resolved against the catalog (``catalog.check_dataset``)."""
TheoryModelName = Literal["averaging", "svm", "logistic"]
"""Kept equal to ``workers.science.theory.THEORY_MODELS`` (a test checks)."""


class Strict(BaseModel):
    """Base of every spec model: unknown keys are errors, never silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True,
                              allow_inf_nan=False)
    """``allow_inf_nan=False``: every float of every spec is finite (``.inf``, ``1e400``, ``.nan``
    are refused), so no run fails later on a database or JSON that cannot hold them."""


# --------------------------------------------------------------------------- attacks


PGD_STEP_FACTOR = 5.0
"""Evaluation PGD's default step size is this times eps / steps (see ``PGDAttack.step_size``)."""


class PGDAttack(Strict):
    """Projected gradient descent (Madry et al. 2018) inside an l_inf or l_2 ball in [0, 1]."""

    kind: Literal["pgd"] = "pgd"
    norm: NormName = Field(description="Threat model: 'linf' or 'l2'.")
    eps: Eps = Field(description="Radius of the ball in pixel space, e.g. 0.3 or 8/255.")
    steps: StepCount = Field(40, ge=1, description="Number of PGD iterations.")
    step_size: PositiveNumber | None = Field(
        None, description="Step size; default 5 * eps / steps (PGD_STEP_FACTOR). Stronger than "
        "Madry et al.'s training default 2.5 * eps / steps: measured on an l_inf-0.3 mnist_cnn "
        "that robustlab trained (200 test digits, 189 clean-correct), 20 steps left 97, 92, 89 "
        "digits robust at 2.5, 3.33 and 5 * eps / steps, 100 steps 93, 91, 90 "
        "(mnist_challenge's 0.01 is 3.33 * eps / steps)."
    )
    restarts: RestartCount = Field(1, ge=1, description="Random restarts; the worst case per example is kept.")
    random_start: bool = Field(True, description="Start from a uniform point in the ball.")

    @property
    def resolved_step_size(self) -> float:
        return self.step_size if self.step_size is not None else PGD_STEP_FACTOR * self.eps / self.steps


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


class APGDAttack(Strict):
    """Auto-PGD (Croce & Hein 2020): PGD with momentum and a step size that adapts per example.

    The step starts at 2 * eps and halves at checkpoints where the loss stopped rising; there is
    no step size to tune. ``loss: dlr`` is APGD-DLR; ``targeted: true`` is APGD-T (targeted DLR
    towards each of the ``n_target_classes`` classes ranked highest after the prediction).
    """

    kind: Literal["apgd"] = "apgd"
    norm: NormName = Field(description="Threat model: 'linf' or 'l2'.")
    eps: Eps = Field(description="Radius of the ball in pixel space, e.g. 0.3 or 8/255.")
    steps: StepCount = Field(100, ge=1, description="Iterations per run (AutoAttack: 100).")
    loss: Literal["ce", "dlr"] = Field(
        "ce", description="'ce' (cross-entropy) or 'dlr' (difference of logits ratio); "
        "targeted runs use the targeted DLR loss."
    )
    restarts: RestartCount = Field(
        1, ge=1, description="Runs (per target when targeted) on the examples still standing."
    )
    targeted: bool = Field(False, description="APGD-T: targeted DLR towards the top classes.")
    n_target_classes: Count = Field(
        9, ge=1, description="Targets of APGD-T; must be below the dataset's number of classes."
    )
    eot_iter: StepCount = Field(
        1, ge=1, description="Gradients averaged per step (EOT, for randomised models)."
    )


class FABAttack(Strict):
    """FAB (Croce & Hein 2020), a minimum-norm attack; targeted (FAB-T) by default.

    Success at ``eps`` means the smallest adversarial perturbation it finds is at most ``eps``.
    """

    kind: Literal["fab"] = "fab"
    norm: NormName = Field(description="Threat model: 'linf' or 'l2'.")
    eps: Eps = Field(description="Radius at which success is judged, in pixel space.")
    steps: StepCount = Field(100, ge=1, description="Iterations per run (AutoAttack: 100).")
    targeted: bool = Field(
        True, description="FAB-T (towards each top class in turn); false: untargeted FAB, "
        "one backward pass per class and step."
    )
    n_target_classes: Count = Field(
        9, ge=1, description="Targets of FAB-T; must be below the dataset's number of classes."
    )
    restarts: RestartCount = Field(
        1, ge=1, description="Runs per target; later ones start at random points."
    )


class SquareAttack(Strict):
    """The Square Attack (Andriushchenko et al. 2020): score-based black-box random search.

    It uses no gradients, so it is immune to gradient masking: breaking points that white-box
    attacks left standing flags ``blackbox_beats_whitebox``.
    """

    kind: Literal["square"] = "square"
    norm: NormName = Field(description="Threat model: 'linf' or 'l2'.")
    eps: Eps = Field(description="Radius of the ball in pixel space.")
    queries: QueryCount = Field(5000, ge=1, description="Queries per example (AutoAttack: 5,000).")
    p_init: Annotated[float, BeforeValidator(parse_number), Field(gt=0, le=1)] = Field(
        0.8, description="Initial fraction of the pixels a proposal changes (halved on a schedule)."
    )
    restarts: RestartCount = Field(1, ge=1, description="Runs on the examples still standing.")


class AutoAttack(Strict):
    """AutoAttack (Croce & Hein 2020), the field's standard robustness evaluation (RobustBench).

    ``standard``: APGD-CE, APGD-T, FAB-T and Square, each on the points still robust;
    ``plus``: adds APGD-DLR and untargeted FAB and uses 5 restarts; ``rand``: APGD-CE and
    APGD-DLR with EOT over 20 draws, for randomised models. One result row per component
    (``variant``) and one for the ensemble's per-example worst case.
    """

    kind: Literal["autoattack"] = "autoattack"
    norm: NormName = Field(description="Threat model: 'linf' or 'l2'.")
    eps: Eps = Field(description="Radius of the ball in pixel space.")
    version: Literal["standard", "plus", "rand"] = Field(
        "standard", description="'standard', 'plus' or 'rand', as the reference code defines them."
    )
    steps: StepCount = Field(100, ge=1, description="Iterations of APGD and FAB (reference: 100).")
    queries: QueryCount = Field(5000, ge=1, description="Square Attack queries (reference: 5,000).")
    n_target_classes: Count = Field(
        9, ge=1, description="Targets of APGD-T and FAB-T (reference: 9); below the dataset's "
        "number of classes."
    )


Attack = Annotated[
    PGDAttack | FGSMAttack | ExactLinearAttack | APGDAttack | FABAttack | SquareAttack | AutoAttack,
    Field(discriminator="kind"),
]
TARGETED_ATTACKS = (APGDAttack, FABAttack, AutoAttack)
"""Attack kinds with ``n_target_classes``: it must be below the dataset's number of classes."""


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
    seed: Count = Field(0, ge=0, description="Seed for every random number generator of the run.")
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
        limit = get_settings().max_sweep_cells
        cells = math.prod(len(values) for values in value.values())  # before any expansion
        if cells > limit:
            sizes = " x ".join(str(len(values)) for values in value.values())
            raise ValueError(f"the sweep has {cells} cells ({sizes}), more than "
                             f"{limit} (ROBUSTLAB_MAX_SWEEP_CELLS)")
        return value


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
        own_files = self.name in catalog.DATASET_FORMATS
        builtin = self.name in catalog.DATASETS
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
        if self.normalization is not None and self.channels is not None \
                and len(self.normalization.mean) != self.channels:
            raise ValueError(f"normalization has {len(self.normalization.mean)} values per "
                             f"statistic but channels is {self.channels}")
        return self


class ModelConfig(Strict):
    """An architecture by name and the keyword arguments of its builder."""

    arch: ArchName
    kwargs: dict[str, Any] = Field(
        default_factory=dict,
        description="Keyword arguments of the builder, e.g. {width: 64} for a plugin or "
        "{weights: IMAGENET1K_V1} for torchvision (online).",
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


TrainingMethodName = Literal["pgd", "trades", "fgsm_rs"]
"""Kept equal to ``service.specs.catalog.TRAINING_METHODS`` and to
``workers.science.training.METHODS`` (a test checks)."""


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


def _checks_scope(value: Any) -> Any:
    """YAML ``true``/``false`` (the field's old boolean form) mean first_batch and off."""
    if isinstance(value, bool):
        return "first_batch" if value else "off"
    return value


ChecksScope = Annotated[
    Literal["first_batch", "all", "off"],
    BeforeValidator(_checks_scope),
    WithJsonSchema({"anyOf": [{"type": "string", "enum": ["first_batch", "all", "off"]},
                              {"type": "boolean"}]}),
]
"""Where the validity checks run; YAML booleans keep their old meaning (validated to a name)."""


class EvaluationConfig(Strict):
    """Attacks run on the test split after training (or on a checkpoint)."""

    attacks: list[Attack] = Field(default_factory=list)
    batch_size: BatchSize = Field(256, ge=1)
    split: Literal["test", "train"] = "test"
    subset: ExampleCount | None = Field(None, ge=1, description="Evaluate the first N examples only.")
    checks: ChecksScope = Field(
        "first_batch", description="Validity checks (eps 0, more steps, FGSM, very large eps, "
        "black box beats white box) on the first batch (default), on every batch ('all'), or "
        "'off'; true and false mean first_batch and off. On the first batch they cost about "
        "what one more attack costs there (the log line 'checks: +N forward-backward passes')."
    )

    def targets_fit(self, num_classes: int) -> EvaluationConfig:
        """Refuse an attack whose ``n_target_classes`` is not below ``num_classes``."""
        for index, attack in enumerate(self.attacks):
            targeted = not isinstance(attack, APGDAttack) or attack.targeted
            if (isinstance(attack, TARGETED_ATTACKS) and targeted
                    and attack.n_target_classes >= num_classes):
                raise ValueError(
                    f"evaluation.attacks.{index}.n_target_classes: must be below the dataset's "
                    f"{num_classes} classes, got {attack.n_target_classes}"
                )
        return self


# --------------------------------------------------------------------------- kinds


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
        default_factory=lambda: list(get_args(TheoryModelName)), min_length=1
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
        limit = get_settings().max_theory_values
        if values > limit:
            raise ValueError(f"(n_train + n_test) x (distribution.d + 1) = {values} sample values, "
                             f"more than {limit} (ROBUSTLAB_MAX_THEORY_VALUES)")
        return self


def _check_targets(evaluation: EvaluationConfig, dataset: DatasetConfig | None) -> None:
    """Targeted attacks need more classes than targets: checked where the dataset is known."""
    info = catalog.DATASETS.get(dataset.name) if dataset is not None else None
    if info is not None:
        evaluation.targets_fit(info.num_classes)


class TrainSpec(SpecBase):
    """Standard or PGD adversarial training of one model, then evaluation."""

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


class CheckpointSource(Strict):
    """Exactly one of a checkpoint file or the id of a run that trained one.

    A file written elsewhere (a bare state_dict, or one under ``state_dict``, ``model_state_dict``,
    ``model`` or ``net``) needs ``model``: the architecture to load it into. robustlab's own
    checkpoints say what they hold, so ``model`` may be left out for them.
    """

    checkpoint: str | None = Field(None, description="Path to a checkpoint file.")
    run: str | None = Field(None, description="Run id whose final checkpoint is used.")
    model: ModelConfig | None = Field(
        None, description="With checkpoint: the architecture of a foreign state_dict "
        "(arch, kwargs); robustlab's own checkpoints need none."
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> CheckpointSource:
        if (self.checkpoint is None) == (self.run is None):
            raise ValueError("give exactly one of 'checkpoint' or 'run'")
        if self.model is not None and self.checkpoint is None:
            raise ValueError("model goes with checkpoint (a run's checkpoint says its model)")
        return self


class EvaluateSpec(SpecBase):
    """Attack a trained model: clean accuracy, each attack, and the per-example worst case."""

    kind: Literal["evaluate"]
    source: CheckpointSource
    dataset: DatasetConfig | None = Field(
        None, description="Default: the dataset the checkpoint was trained on."
    )
    evaluation: EvaluationConfig = EvaluationConfig()

    @model_validator(mode="after")
    def _targets_fit_the_classes(self) -> EvaluateSpec:
        _check_targets(self.evaluation, self.dataset)
        return self


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
    run: str | None = Field(None, description="Id of a train run whose final checkpoint is used.")
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
        if self.attacks is None and not catalog.large_eps_radii(self.dataset.name):
            raise ValueError(f"Table 3 gives no large-eps radii for {self.dataset.name!r}: list "
                             "the attacks (attacks: [{norm: linf, eps: ...}])")
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
SPEC_KINDS: dict[str, type[SpecBase]] = {
    model.model_fields["kind"].annotation.__args__[0]: model  # type: ignore[union-attr]
    for model in get_args(get_args(AnySpec)[0])
}
"""kind -> spec class, read off ``AnySpec`` (one list)."""


def _attack_kinds() -> set[str]:
    return {
        model.model_fields["kind"].annotation.__args__[0]  # type: ignore[union-attr]
        for model in get_args(get_args(Attack)[0])
    }


def _check_against_catalog() -> None:
    """The unions above and the catalog must name the same kinds: fail at import, loudly.

    A spec class is needed per kind (its parameters differ), so this is the one place two
    lists meet; an engineer adding a kind to one and not the other sees this at once.
    """
    pairs = {
        "experiment kinds (AnySpec vs catalog.EXPERIMENT_KINDS)": (set(SPEC_KINDS),
                                                                    set(catalog.EXPERIMENT_KINDS)),
        "attack kinds (Attack vs catalog.ATTACKS)": (_attack_kinds(), set(catalog.ATTACKS)),
        "norms (NormName vs catalog.NORMS)": (set(get_args(NormName)), set(catalog.NORMS)),
    }
    for what, (spec_side, catalog_side) in pairs.items():
        if spec_side != catalog_side:
            raise RuntimeError(f"{what} differ: {sorted(spec_side ^ catalog_side)}")


_check_against_catalog()
