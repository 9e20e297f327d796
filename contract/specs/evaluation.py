"""``evaluation:``: the attacks a run measures, on which split, with which checks."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, WithJsonSchema

from contract.specs.attacks import Attack
from contract.specs.values import ADDED_LATER, BatchSize, ExampleCount, Strict


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
    checkpoints: Annotated[list[Literal["final", "best"]] | None, ADDED_LATER] = Field(
        None, min_length=1, description="Train kind: which weights to evaluate, any of 'final' "
        "and 'best' (best needs training.select best_robust or best_clean); default: the "
        "selected ones alone.")

    def resolved_checkpoints(self, select: str) -> list[str]:
        """The checkpoints to evaluate, without repeats: as given, or the selected one."""
        if self.checkpoints is None:
            return ["final" if select == "final" else "best"]
        return list(dict.fromkeys(self.checkpoints))

    def targets_fit(self, num_classes: int) -> EvaluationConfig:
        """Refuse an attack whose ``n_target_classes`` is not below ``num_classes``."""
        for index, attack in enumerate(self.attacks):
            targets = attack.target_count()
            if targets is not None and targets >= num_classes:
                raise ValueError(
                    f"evaluation.attacks.{index}.n_target_classes: must be below the dataset's "
                    f"{num_classes} classes, got {targets}"
                )
        return self
