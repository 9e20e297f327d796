"""Attack kinds of ``evaluation.attacks``: one spec class each, and the registry of them.

Each class is the one registration of its attack: its ``kind`` is the name, its fields the
parameters (validated, documented, exported to the JSON Schema), ``implementation`` the
``module:function`` that runs it (imported only when a run evaluates, so validation stays
torch-free), and its methods say how its rows are described (``record_fields``, ``label``).
The science dispatches through ``implementation``; nothing outside ``workers.science.attacks``
asks which class an attack is.

A lab's own attack plugs in without an edit of robustlab: a torch-free subclass of
``AttackSpec`` in an installed package, named by an entry point in the group
``robustlab.attacks`` (``contract.catalog.ATTACK_GROUP``) whose name is its ``kind``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, Union

from pydantic import BeforeValidator, Field

from contract.catalog import ATTACK_GROUP
from contract.registry import entry_points, load_object
from contract.specs.values import (
    Count,
    Eps,
    NormName,
    PositiveNumber,
    QueryCount,
    RestartCount,
    StepCount,
    Strict,
    parse_number,
)

log = logging.getLogger(__name__)

PGD_STEP_FACTOR = 5.0
"""Evaluation PGD's default step size is this times eps / steps (see ``PGDAttack.step_size``)."""


class AttackSpec(Strict):
    """Base of every attack kind: a ``kind`` literal, a ``norm`` and an ``eps`` (pixel space).

    Subclasses set ``title`` and ``implementation`` and declare their fields; the methods below
    have defaults that fit a one-step or black-box attack.
    """

    title: ClassVar[str] = ""
    implementation: ClassVar[str] = ""
    """``module:function`` called as ``function(spec, model, x, y, generator)``, returning a
    ``workers.science.attacks.common.AttackRun``."""
    blackbox: ClassVar[bool] = False
    """Uses no gradients: breaking points a white-box attack left flags gradient masking."""
    exact: ClassVar[bool] = False
    """Computes the exact worst case: every other attack of its ball is bounded by it."""

    if TYPE_CHECKING:  # declared by every subclass (each with its own literal and description)
        kind: str
        norm: str
        eps: float

    def label(self) -> str:
        """A short readable name, used in check names and details: ``pgd linf eps=0.3 ...``."""
        return f"{self.kind} {self.norm} eps={self.eps:.6g}"

    def record_fields(self) -> dict[str, Any]:
        """The result-row columns that describe this configuration (``attack``, ``steps``, ...)."""
        return {"attack": self.kind, "eval_norm": self.norm, "eval_eps": self.eps}

    def component_fields(self, component: str, order: int, seconds: float) -> dict[str, Any]:
        """Columns of the row of one component of an ensemble (its name as ``variant``)."""
        fields = self.record_fields()
        fields["variant"] = component
        fields["details"] = {**fields.get("details", {}), "component": component,
                             "order": order, "seconds": round(seconds, 3)}
        return fields

    def target_count(self) -> int | None:
        """Target classes it attacks in turn (must be below the dataset's classes), if any."""
        return None

    def cheaper(self) -> AttackSpec | None:
        """A weaker configuration of the same attack (fewer steps, one restart), for the
        ``more_steps`` check; None when there is none."""
        return None

    @property
    def fgsm_comparable(self) -> bool:
        """Whether FGSM at the same eps bounds it (an iterative l_inf gradient attack)."""
        return False


PGD_STEP_FACTOR = 5.0
"""Evaluation PGD's default step size is this times eps / steps (see ``PGDAttack.step_size``)."""


class _NamedVariant(AttackSpec):
    """An attack of AutoAttack's reference code (APGD, FAB): rows named by its ``variant``
    (apgd-ce, apgd-t, fab-t, ...), targeted runs over ``n_target_classes`` classes."""

    if TYPE_CHECKING:  # declared by each subclass with its own default and description
        steps: int
        restarts: int
        targeted: bool
        n_target_classes: int

    @property
    def variant(self) -> str:
        raise NotImplementedError

    def label(self) -> str:
        return f"{super().label()} {self.variant} steps={self.steps}"

    def record_fields(self) -> dict[str, Any]:
        return {**super().record_fields(), "steps": self.steps, "restarts": self.restarts,
                "variant": self.variant, "details": {"n_target_classes": self.n_target_classes}}

    def target_count(self) -> int | None:
        return self.n_target_classes if self.targeted else None


class PGDAttack(AttackSpec):
    """Projected gradient descent (Madry et al. 2018) inside an l_inf or l_2 ball in [0, 1]."""

    title: ClassVar[str] = "PGD (Madry et al. 2018)"
    implementation: ClassVar[str] = "workers.science.attacks.pgd:run_spec"
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

    def label(self) -> str:
        return f"{super().label()} steps={self.steps} restarts={self.restarts}"

    def record_fields(self) -> dict[str, Any]:
        return {**super().record_fields(), "steps": self.steps,
                "step_size": self.resolved_step_size, "restarts": self.restarts,
                "details": {"random_start": self.random_start}}

    def cheaper(self) -> PGDAttack | None:
        if self.steps == 1 and self.restarts == 1:
            return None
        return self.model_copy(update={"steps": max(1, self.steps // 2), "restarts": 1,
                                       "step_size": self.resolved_step_size})

    @property
    def fgsm_comparable(self) -> bool:
        return self.norm == "linf" and self.eps > 0


class FGSMAttack(AttackSpec):
    """Fast gradient sign method (Goodfellow et al. 2015), one l_inf step of size eps."""

    title: ClassVar[str] = "FGSM (Goodfellow et al. 2015)"
    implementation: ClassVar[str] = "workers.science.attacks.fgsm:run_spec"
    kind: Literal["fgsm"] = "fgsm"
    norm: Literal["linf"] = "linf"
    eps: Eps

    def record_fields(self) -> dict[str, Any]:
        return {**super().record_fields(), "steps": 1, "step_size": self.eps, "restarts": 1}


class ExactLinearAttack(AttackSpec):
    """The closed-form worst case for a linear model (exact, no iterations)."""

    title: ClassVar[str] = "exact worst case of a linear model"
    implementation: ClassVar[str] = "workers.science.attacks.linear:run_spec"
    exact: ClassVar[bool] = True
    kind: Literal["exact_linear"] = "exact_linear"
    norm: NormName
    eps: Eps


class APGDAttack(_NamedVariant):
    """Auto-PGD (Croce & Hein 2020): PGD with momentum and a step size that adapts per example.

    The step starts at 2 * eps and halves at checkpoints where the loss stopped rising; there is
    no step size to tune. ``loss: dlr`` is APGD-DLR; ``targeted: true`` is APGD-T (targeted DLR
    towards each of the ``n_target_classes`` classes ranked highest after the prediction).
    """

    title: ClassVar[str] = "APGD (Croce & Hein 2020)"
    implementation: ClassVar[str] = "workers.science.attacks.apgd:run_spec"
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

    @property
    def variant(self) -> str:
        """The reference's name of this configuration: apgd-ce, apgd-dlr or apgd-t."""
        return "apgd-t" if self.targeted else f"apgd-{self.loss}"


class FABAttack(_NamedVariant):
    """FAB (Croce & Hein 2020), a minimum-norm attack; targeted (FAB-T) by default.

    Success at ``eps`` means the smallest adversarial perturbation it finds is at most ``eps``.
    """

    title: ClassVar[str] = "FAB (Croce & Hein 2020)"
    implementation: ClassVar[str] = "workers.science.attacks.fab:run_spec"
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

    @property
    def variant(self) -> str:
        """The reference's name of this configuration: fab-t or fab."""
        return "fab-t" if self.targeted else "fab"


class SquareAttack(AttackSpec):
    """The Square Attack (Andriushchenko et al. 2020): score-based black-box random search.

    It uses no gradients, so it is immune to gradient masking: breaking points that white-box
    attacks left standing flags ``blackbox_beats_whitebox``.
    """

    title: ClassVar[str] = "Square Attack (Andriushchenko et al. 2020)"
    implementation: ClassVar[str] = "workers.science.attacks.square:run_spec"
    blackbox: ClassVar[bool] = True
    kind: Literal["square"] = "square"
    norm: NormName = Field(description="Threat model: 'linf' or 'l2'.")
    eps: Eps = Field(description="Radius of the ball in pixel space.")
    queries: QueryCount = Field(5000, ge=1, description="Queries per example (AutoAttack: 5,000).")
    p_init: Annotated[float, BeforeValidator(parse_number), Field(gt=0, le=1)] = Field(
        0.8, description="Initial fraction of the pixels a proposal changes (halved on a schedule)."
    )
    restarts: RestartCount = Field(1, ge=1, description="Runs on the examples still standing.")

    def label(self) -> str:
        return f"{super().label()} queries={self.queries}"

    def record_fields(self) -> dict[str, Any]:
        return {**super().record_fields(), "steps": self.queries, "restarts": self.restarts,
                "details": {"queries": self.queries, "p_init": self.p_init}}


class AutoAttack(AttackSpec):
    """AutoAttack (Croce & Hein 2020), the field's standard robustness evaluation (RobustBench).

    ``standard``: APGD-CE, APGD-T, FAB-T and Square, each on the points still robust;
    ``plus``: adds APGD-DLR and untargeted FAB and uses 5 restarts; ``rand``: APGD-CE and
    APGD-DLR with EOT over 20 draws, for randomised models. One result row per component
    (``variant``) and one for the ensemble's per-example worst case.
    """

    title: ClassVar[str] = "AutoAttack (Croce & Hein 2020)"
    implementation: ClassVar[str] = "workers.science.attacks.autoattack:run_spec"
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

    def label(self) -> str:
        return f"{super().label()} {self.version}"

    def record_fields(self) -> dict[str, Any]:
        return {**super().record_fields(), "steps": self.steps,
                "variant": "" if self.version == "standard" else self.version,
                "details": {"version": self.version, "queries": self.queries,
                            "n_target_classes": self.n_target_classes}}

    def component_fields(self, component: str, order: int, seconds: float) -> dict[str, Any]:
        prefix = "" if self.version == "standard" else f"{self.version}:"
        return super().component_fields(prefix + component, order, seconds)

    def target_count(self) -> int | None:
        return self.n_target_classes


BUILTIN_ATTACKS: tuple[type[AttackSpec], ...] = (
    PGDAttack, FGSMAttack, ExactLinearAttack, APGDAttack, FABAttack, SquareAttack, AutoAttack,
)


def kind_of(model: type[AttackSpec]) -> str:
    """The ``kind`` literal of an attack class."""
    return str(model.model_fields["kind"].default)


def _plugin_attacks() -> list[type[AttackSpec]]:
    """Attack classes of installed ``robustlab.attacks`` entry points (torch-free modules).

    A plugin that cannot be loaded, or is not an ``AttackSpec`` of its entry point's kind, is
    left out with one logged line: one broken package must not stop every spec from validating.
    """
    found: list[type[AttackSpec]] = []
    builtin = {kind_of(model) for model in BUILTIN_ATTACKS}
    for name, reference in entry_points(ATTACK_GROUP).items():
        try:
            model = load_object(reference)
        except Exception as exc:  # any error of foreign code: reported, not raised
            log.warning("attack plugin %r (%s) cannot be loaded: %s", name, reference, exc)
            continue
        if not (isinstance(model, type) and issubclass(model, AttackSpec)) \
                or kind_of(model) != name or name in builtin:
            log.warning("attack plugin %r (%s) is not an AttackSpec subclass with kind %r "
                        "(or shadows a built-in): left out", name, reference, name)
            continue
        found.append(model)
    return found


ATTACKS: dict[str, type[AttackSpec]] = {
    kind_of(model): model for model in (*BUILTIN_ATTACKS, *_plugin_attacks())
}
"""kind -> attack class: the one list of attack kinds (built-ins, then plugins)."""

if TYPE_CHECKING:
    Attack = AttackSpec
else:  # the discriminated union of every registered class, built from the registry
    Attack = Annotated[Union[tuple(ATTACKS.values())], Field(discriminator="kind")]  # noqa: UP007
