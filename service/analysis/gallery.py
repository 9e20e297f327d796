"""Gallery groups (E4-E6 and Figure 2a): which pictures sit side by side, how each model is
labelled, and which measured numbers go with it; the dashboard's Galleries page and the
report's picture sections both use it.

Artifacts (large-eps adversarial examples, interpolations, loss gradients, weight images) carry
metadata such as ``model``, ``train_norm`` and ``train_eps`` and what they show (the attack's
``norm`` and ``eps``, an image index). Pictures of one subject by different models form one row:
standard model first, then the robust ones. Under each picture go the metrics of its run whose
tags agree with its metadata (e.g. ``target_agreement`` of the same model and attack).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import pandas as pd

from contract.records import PER_EXAMPLE_KIND
from service.analysis.common import MetricFacts, norm_rank

GALLERY_KINDS = {
    "large_eps": "Large-ε adversarial examples (Figures 3, 6, 7)",
    "interpolation": "Interpolation towards the adversarial example (Figure 4)",
    "gradients": "Loss gradients (Figures 5, 8)",
    "weights": "Weights of linear models (Figure 2a)",
    "figure": "Figures",
}
MODEL_KEYS = ("model", "label", "arch", "train_norm", "train_eps", "seed")
"""Metadata that tells models apart."""


@dataclass(frozen=True)
class Group:
    """Pictures of one thing (same kind, experiment and subject), one per model."""

    kind: str
    experiment: str
    title: str
    items: list[dict[str, Any]]
    """Artifact rows (``service.store.queries.ARTIFACT_COLUMNS``), standard model first."""


def model_label(metadata: dict[str, Any]) -> str:
    """'standard', 'robust (linf, ε=0.3)', with the model name; empty without model fields."""
    name = metadata.get("model") or metadata.get("label") or metadata.get("arch")
    eps = metadata.get("train_eps")
    if eps is None:
        training = ""
    elif float(eps) == 0:
        training = "standard"
    else:
        training = f"robust ({metadata.get('train_norm') or '?'}, ε={float(eps):g})"
    parts = [str(part) for part in (name, training) if part]
    return " · ".join(dict.fromkeys(parts))  # "standard", not "standard · standard"


def _metadata(row: dict[str, Any]) -> dict[str, Any]:
    return row["metadata"] or {}


def _identity(row: dict[str, Any]) -> tuple[str, ...]:
    return tuple(str(_metadata(row).get(key)) for key in MODEL_KEYS)


def subject_keys(rows: list[dict[str, Any]]) -> list[str]:
    """Metadata keys that say what a picture shows: those that vary among one model's pictures.

    Keys that vary only from model to model (``weight_l1`` of a weight image, say) are
    measurements of the model, not a different subject, so they do not split a row.
    """
    by_model: dict[tuple[str, ...], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_model[_identity(row)].append(_metadata(row))
    keys = {key for row in rows for key in _metadata(row)} - set(MODEL_KEYS)
    return sorted(
        key for key in keys
        if any(len({str(m.get(key)) for m in metas}) > 1 for metas in by_model.values())
    )


def _model_order(row: dict[str, Any]) -> tuple[float, str, str, str]:
    metadata = _metadata(row)
    eps = metadata.get("train_eps")
    return (float(eps) if eps is not None else -math.inf, str(metadata.get("train_norm") or ""),
            str(metadata.get("model") or metadata.get("label") or ""), row["name"])


def _title(experiment: str, rows: list[dict[str, Any]]) -> str:
    """The experiment and the non-model metadata that every picture of the row shares."""
    first = _metadata(rows[0])
    shared = [
        f"{key}={_text(first[key])}" for key in sorted(first)
        if key not in MODEL_KEYS and all(str(_metadata(r).get(key)) == str(first[key]) for r in rows)
    ]
    return " · ".join([experiment, *shared])


def gallery_groups(artifacts: pd.DataFrame) -> list[Group]:
    """Rows of pictures: per kind and experiment, one row per subject, models side by side."""
    order = {kind: i for i, kind in enumerate(GALLERY_KINDS)}
    by_kind: dict[tuple[int, str, str], list[dict[str, Any]]] = defaultdict(list)
    for row in artifacts.to_dict("records"):
        if row["kind"] == PER_EXAMPLE_KIND:  # numbers for the claims, not pictures
            continue
        by_kind[(order.get(row["kind"], len(order)), row["kind"], row["experiment"])].append(row)
    groups: list[Group] = []
    for (_, kind, experiment), rows in sorted(by_kind.items()):
        keys = subject_keys(rows)
        by_subject: dict[tuple[str, ...], list[dict[str, Any]]] = defaultdict(list)
        for row in rows:
            by_subject[tuple(str(_metadata(row).get(key)) for key in keys)].append(row)
        groups.extend(
            Group(kind=kind, experiment=experiment, title=_title(experiment, items),
                  items=sorted(items, key=_model_order))
            for _, items in sorted(by_subject.items())
        )
    return groups


def matching_metrics(metrics: pd.DataFrame, run_id: str,
                     metadata: dict[str, Any]) -> list[tuple[str, float]]:
    """(label, value) of the run's metrics whose tags agree with the artifact's metadata.

    A metric matches when its tags share at least one key with the metadata and every shared
    key has the same value. A metric logged at several steps gives its last value. When one
    name matches several times (tags that the metadata does not mention tell them apart, e.g.
    one per model under a figure of both), each is labelled with those tags.
    """
    rows = metrics[metrics["run_id"] == run_id].sort_values(["name", "step"])
    found: dict[tuple[str, str], float] = {}
    for row in rows.to_dict("records"):
        tags = row["tags"] or {}
        shared = set(tags) & set(metadata)
        if shared and all(_same(tags[k], metadata[k]) for k in shared):
            others = ", ".join(f"{k}={_text(tags[k])}" for k in sorted(set(tags) - shared))
            found[(row["name"], others)] = float(row["value"])
    names = [name for name, _ in found]
    return [
        (name if names.count(name) == 1 else f"{name} ({others})", value)
        for (name, others), value in sorted(found.items())
    ]


def _text(value: Any) -> str:
    """Numbers short (0.1265, not 0.12649110641347033), everything else as it is."""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _same(a: Any, b: Any) -> bool:
    """Equal, counting 0.3 and "0.3" (JSON round trips) as equal."""
    if isinstance(a, int | float) and isinstance(b, int | float):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)
    return str(a) == str(b)


# --------------------------------------------------------------------------- model labels


@dataclass(frozen=True)
class ModelLabel:
    """A model of a visualisation run: its label and how it was trained (when known)."""

    label: str
    train_norm: str | None
    train_eps: float | None

    @property
    def robust(self) -> bool | None:
        return None if self.train_eps is None else self.train_eps > 0

    def describe(self) -> str:
        """The label with how the model was trained, unless the label already says it."""
        if self.train_eps is None:
            return self.label
        trained = ("standard" if self.train_eps == 0
                   else f"{self.train_norm or ''} ε={self.train_eps:.4g}".strip())
        return self.label if self.label == trained else f"{self.label} ({trained})"


LABEL_KEYS = ("label", "model")
"""Where metadata and tags name the model: the brief's ``label``; the visualize kind (and the
dashboard's galleries) use ``model``."""


def model_labels(metadata: Iterable[dict[str, Any]]) -> dict[str, ModelLabel]:
    """Label -> model, from artifacts' metadata, for tags that name a model by label only."""
    labels: dict[str, ModelLabel] = {}
    for entry in metadata:
        model = model_of(entry, {})
        if model is not None and model.train_eps is not None:
            labels.setdefault(model.label, model)
    return labels


def model_of(tags: dict[str, Any], known: dict[str, ModelLabel]) -> ModelLabel | None:
    """The model that metadata or tags describe: by label and ``train_norm``/``train_eps``;
    a label alone is looked up in ``known``; ``None`` when neither is there."""
    eps = tags.get("train_eps")
    label = next((str(tags[key]) for key in LABEL_KEYS if tags.get(key) is not None), None)
    if label is None:
        if eps is None:
            return None
        label = ("standard" if eps == 0
                 else f"{tags.get('train_norm') or ''} ε={float(eps):.4g}".strip())
    if eps is None:
        return known.get(label, ModelLabel(label, None, None))
    return ModelLabel(label, tags.get("train_norm"), float(eps))


def model_order(model: ModelLabel) -> tuple[int, int, float, str]:
    """Standard models first, then robust ones (l_inf before l_2), then unknown ones."""
    return (0 if model.robust is False else 1 if model.robust else 2,
            norm_rank(model.train_norm), model.train_eps or 0.0, model.label)


Attack = tuple[Any, Any]
"""An attack's (norm, eps) from metadata or tags; (None, None) where there is none."""


def attack_of(tags: dict[str, Any]) -> Attack:
    return tags.get("norm"), tags.get("eps")


def attack_order(attack: Attack) -> tuple[int, str]:
    return norm_rank(attack[0]), str(attack[1])


def attack_text(attack: Attack) -> str:
    """``linf ε=0.3`` for an attack's (norm, eps); ``–`` when neither is known."""
    norm, eps = attack
    if norm is None and eps is None:
        return "–"
    return f"{norm or ''} ε={eps:.4g}".strip() if isinstance(eps, int | float) else str(norm)


@dataclass(frozen=True)
class Measured:
    model: ModelLabel
    attack: Attack
    value: float
    count: int


def measured(metrics: Iterable[MetricFacts], labels: dict[str, ModelLabel]) -> list[Measured]:
    """Mean of a metric per model and attack, over images, judges and steps."""
    groups: dict[tuple[ModelLabel, Attack], list[float]] = defaultdict(list)
    for metric in metrics:
        model = model_of(metric.tags, labels)
        if model is not None and metric.value is not None:  # null: NaN when measured
            groups[(model, attack_of(metric.tags))].append(metric.value)
    return [Measured(model, attack, sum(values) / len(values), len(values))
            for (model, attack), values in sorted(
                groups.items(), key=lambda item: (attack_order(item[0][1]), model_order(item[0][0])))]
