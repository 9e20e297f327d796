"""The ``visualize`` experiment kind (E4-E6): standard and robust models' pictures, side by side.

A run first gets its models: each entry of ``spec.models`` (and ``spec.independent``) is the
final checkpoint of an earlier run (``run``), a checkpoint file (``checkpoint``), or a training
block (``train``) trained here, under ``ctx.run_dir / "models" / <label>``, with the ordinary
training loop. A re-executed run resumes those trainings from their checkpoints, then redoes
the (deterministic) pictures and measures; every record has a stable key or name, so nothing
is reported twice. In-run models' checkpoints are reported (``final`` False, metadata
``model``: the label), so another spec can name the files.

Then, on the first ``measure_images`` images of the split (the first ``n_images`` are drawn;
the science and the measures are in ``workers.science.visualize``):

- ``large_eps`` (E4, Figs. 3, 6, 7): per model and attack, targeted PGD towards another
  class. Artifacts ``large_eps_<label>_<norm>_<eps>.png`` (kind "large_eps") and
  ``figure_large_eps_<norm>_<eps>.png`` (kind "figure", the models side by side). Metrics
  ``large_eps_success`` (the attacked model predicts the target) and, with an ``independent``
  model, ``target_agreement`` (of those, the fraction the independent model also sees as the
  target; the paper predicts it higher for robust models).
- ``interpolation`` (E5, Fig. 4): the segment from each shown image to its large-eps
  example, ``interpolation_points`` images. Artifacts of kind "interpolation", and a "figure"
  with one strip per model and image. Only the shown images are attacked when nothing else
  needs the attack.
- ``gradients`` (E6, Figs. 5, 8): the loss gradient per pixel. Artifacts of kind "gradients"
  and a "figure"; metric ``gradient_edge_alignment`` (mean Pearson correlation of |gradient|
  with the image's Sobel edges; the paper predicts it higher for robust models).

Every model, the judge included, also gets its clean accuracy on the measured images (an
evaluation record whose ``variant`` is the model's label), so no picture or measure silently
comes from a broken model.

Artifact metadata and metric tags name the model as the dashboard's galleries expect:
``model`` (the label), ``arch``, ``train_norm``, ``train_eps``, plus ``norm`` and ``eps`` of
the attack where there is one. Pictures that differ only in the model then sit in one row,
and each metric goes under the pictures of its own model.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator, Sized
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Subset

from contract.records import (
    PER_EXAMPLE_KIND,
    PER_EXAMPLE_MEDIA_TYPE,
    ArtifactRecord,
    Cancelled,
    CheckpointRecord,
    EvaluationRecord,
    MetricRecord,
    Reporter,
)
from contract.specs.architecture import CheckpointSource
from contract.specs.data import DatasetConfig
from contract.specs.kinds import TrainSpec
from contract.specs.visualize import InRunTraining, LargeEpsAttack, VisualizedModel, VisualizeSpec
from workers.science.context import RunContext
from workers.science.datasets import data_provenance, dataset_info, load_dataset
from workers.science.experiments.evaluate import checkpoint_file
from workers.science.experiments.train import checkpoint_meta
from workers.science.models import build_model
from workers.science.state_dicts import load_source_model
from workers.science.training import EpochMetrics, TrainHooks, seed_everything, train
from workers.science.visualize import (
    class_name,
    default_large_eps_attacks,
    gradient_cells,
    gradient_edge_alignment,
    grid_png,
    image_cells,
    input_gradients,
    interpolate,
    large_eps_examples,
    predicted_as,
    target_classes,
)


def run(spec: VisualizeSpec, ctx: RunContext) -> None:
    """Get (or train) the models, then draw and measure what ``spec.show`` asks for."""
    attacks = spec.attacks or default_large_eps_attacks(spec.dataset.name)
    progress = _Progress(ctx.reporter, _total_units(spec, attacks))
    models = [_obtain(source, spec, ctx, progress) for source in spec.models]
    judge = _obtain(spec.independent, spec, ctx, progress) if spec.independent else None
    ctx.reporter.provenance(
        **data_provenance(spec.dataset, ctx.data_dir),
        models={m.label: m.provenance() for m in [*models, *([judge] if judge else [])]},
    )
    images = _load_images(spec, ctx)
    for model in [*models, *([judge] if judge else [])]:
        _report_clean_accuracy(model, images, spec, ctx)
    if {"large_eps", "interpolation"} & set(spec.show):
        for attack in attacks:
            outcomes = {m.label: _attack(m, judge, images, attack, spec, ctx, progress)
                        for m in models}
            _report_attack(models, outcomes, images, attack, spec, judge, ctx.reporter)
    if "gradients" in spec.show:
        gradients = {m.label: _gradients(m, images, spec, ctx, progress) for m in models}
        _report_gradients(models, gradients, images, ctx.reporter)


# --------------------------------------------------------------------------- models


@dataclass(frozen=True)
class Model:
    """A model of the visualisation with its label and checkpoint metadata."""

    label: str
    net: nn.Module
    meta: dict[str, Any]
    """From the checkpoint: arch, dataset, num_classes, train_norm, train_eps, epoch, ..."""
    checkpoint: Path

    @property
    def identity(self) -> dict[str, Any]:
        """What tells this model apart in artifact metadata and metric tags."""
        return {"model": self.label, "arch": self.meta["arch"],
                "train_norm": self.meta["train_norm"], "train_eps": self.train_eps}

    @property
    def train_eps(self) -> float | None:
        """The training radius, None when unknown (a checkpoint trained elsewhere)."""
        eps = self.meta["train_eps"]
        return None if eps is None else float(eps)

    def provenance(self) -> dict[str, Any]:
        return {"checkpoint": str(self.checkpoint), "epoch": self.meta.get("epoch"),
                **self.identity}


def _obtain(source: VisualizedModel, spec: VisualizeSpec, ctx: RunContext,
            progress: _Progress) -> Model:
    """Load the model a source names, training it first when it is a ``train`` block."""
    if source.train is not None:
        path = _train_in_run(source.label, source.train, spec, ctx, progress)
    else:
        path = checkpoint_file(CheckpointSource(checkpoint=source.checkpoint, run=source.run), ctx)
    net, meta = load_source_model(path, ctx.device, model_cfg=source.model,
                                  info_for=lambda: dataset_info(spec.dataset, ctx.data_dir))
    if meta["dataset"] != spec.dataset.name:
        raise ValueError(f"model {source.label!r} ({path}) was trained on {meta['dataset']}, "
                         f"but this visualisation shows {spec.dataset.name}")
    return Model(label=source.label, net=net, meta=meta, checkpoint=path)


def _train_in_run(label: str, block: InRunTraining, spec: VisualizeSpec, ctx: RunContext,
                  progress: _Progress) -> Path:
    """Train (or resume training) a ``train`` block under ``run_dir/models/<label>``.

    The block becomes a ``TrainSpec`` so the checkpoints carry the same metadata as a train
    run's (``load_model`` rebuilds the model from them, and another spec can name the file).
    """
    train_spec = TrainSpec(
        name=label, kind="train", dataset=block.dataset or spec.dataset, model=block.model,
        training=block.training, adversary=block.adversary,
        seed=spec.seed if block.seed is None else block.seed,
        checkpoint_every=block.checkpoint_every,
    )
    info = dataset_info(train_spec.dataset, ctx.data_dir)
    seed_everything(train_spec.seed)
    net = build_model(block.model.arch, info.num_classes, dataset=info, kwargs=block.model.kwargs)

    def resumed(_path: Path, _epoch: int, history: list[EpochMetrics]) -> None:
        for metrics in history:  # the attempt that trained them may have died before the store
            _report_epoch(ctx.reporter, label, metrics)

    hooks = TrainHooks(on_batch=progress.training(label, block.training.epochs),
                       on_epoch=lambda metrics: _report_epoch(ctx.reporter, label, metrics),
                       on_resume=resumed, should_stop=ctx.reporter.should_stop)
    outcome = train(net, load_dataset(train_spec.dataset, ctx.data_dir, train=True),
                    block.training, block.adversary, device=ctx.device,
                    checkpoint_dir=ctx.run_dir / "models" / label, seed=train_spec.seed,
                    checkpoint_every=block.checkpoint_every, hooks=hooks,
                    meta=checkpoint_meta(train_spec, info))
    progress.trained(label, block.training.epochs)
    ctx.reporter.checkpoint(CheckpointRecord(
        path=outcome.final_checkpoint.resolve(), epoch=block.training.epochs,
        arch=block.model.arch, dataset=train_spec.dataset.name, train_norm=block.adversary.norm,
        train_eps=block.adversary.eps, final=False,
        metadata={"model": label, "seed": train_spec.seed, "num_classes": info.num_classes},
    ))
    return outcome.final_checkpoint


def _report_epoch(reporter: Reporter, label: str, metrics: EpochMetrics) -> None:
    values = {"train_loss": metrics.loss, "train_accuracy": metrics.accuracy,
              "train_adv_accuracy": metrics.adv_accuracy}
    for name, value in values.items():
        if value is not None:
            reporter.metric(MetricRecord(name=name, value=value, step=metrics.epoch,
                                         tags={"model": label}))


# --------------------------------------------------------------------------- images


@dataclass(frozen=True)
class Images:
    """The images a run measures, on the CPU; the first ``shown`` of them are drawn."""

    x: torch.Tensor  # (N, C, H, W) in [0, 1]
    y: torch.Tensor  # (N,)
    target: torch.Tensor  # (N,) the large-eps target class of each image
    shown: int
    class_names: tuple[str, ...]

    def batches(self, batch_size: int, device: torch.device,
                should_stop: Callable[[], bool]) -> Iterator[tuple[torch.Tensor, ...]]:
        """(x, y, target) batches on ``device``; raises ``Cancelled`` between batches on request."""
        for start in range(0, self.x.shape[0], batch_size):
            if should_stop():
                raise Cancelled(f"visualisation stopped at image {start}")
            part = slice(start, start + batch_size)
            yield self.x[part].to(device), self.y[part].to(device), self.target[part].to(device)

    def arrows(self) -> list[str]:
        """'7 → 8' per shown image: its true and its target class, for titles."""
        names = self.class_names
        return [f"{class_name(names, int(self.y[i]))} → {class_name(names, int(self.target[i]))}"
                for i in range(self.shown)]


def _load_images(spec: VisualizeSpec, ctx: RunContext) -> Images:
    """The first images of the split: ``measure_images`` when measuring, else ``n_images``.

    Only interpolations need no measure, so they attack just the shown images.
    """
    count = spec.n_images if set(spec.show) == {"interpolation"} else spec.measure_images
    cfg: DatasetConfig = spec.dataset.model_copy(update={"augment": False})
    data = load_dataset(cfg, ctx.data_dir, train=spec.split == "train")
    loader = DataLoader(Subset(data, range(min(count, len(cast(Sized, data))))),
                        batch_size=spec.batch_size)
    xs, ys = zip(*loader, strict=True)
    x, y = torch.cat(xs), torch.cat(ys)
    info = dataset_info(spec.dataset, ctx.data_dir)
    generator = torch.Generator().manual_seed(spec.seed)
    target = target_classes(y, info.num_classes, rule=spec.target, generator=generator)
    return Images(x=x, y=y, target=target, shown=min(spec.n_images, len(y)),
                  class_names=info.class_names)


def _report_clean_accuracy(model: Model, images: Images, spec: VisualizeSpec,
                           ctx: RunContext) -> None:
    hits = 0
    for x, y, _ in images.batches(spec.batch_size, ctx.device, ctx.reporter.should_stop):
        hits += int(predicted_as(model.net, x, y).sum())
    ctx.reporter.evaluation(EvaluationRecord(
        model=model.meta["arch"], dataset=spec.dataset.name, accuracy=hits / len(images.y),
        n=len(images.y), split=spec.split, train_norm=model.meta["train_norm"],
        train_eps=model.train_eps, variant=model.label,
    ))


# --------------------------------------------------------------------------- large eps


@dataclass(frozen=True)
class LargeEpsOutcome:
    """One model's large-eps examples: the shown ones, and how often they reach the target."""

    shown: torch.Tensor  # (shown, C, H, W) on the CPU
    success: float
    """Fraction the attacked model itself classifies as the target."""
    agreement: float | None
    """Among the examples the attacked model classifies as the target, the fraction the
    independent model classifies as the target too; None without a judge or a success."""
    judged: torch.Tensor | None = None
    """Per image (CPU, 0/1): whether the judge classifies its large-eps example as the
    target, whatever the attacked model does (how target-like the example looks to an
    independent model: the paper's claim); None without a judge. Defined on every image, so
    models compare paired on the same images without selecting the ones an attack reached."""


def _attack(model: Model, judge: Model | None, images: Images, attack: LargeEpsAttack,
            spec: VisualizeSpec, ctx: RunContext, progress: _Progress) -> LargeEpsOutcome:
    """Targeted large-eps PGD against ``model`` on every image, judged by ``judge``."""
    shown = _FirstRows(images.shown)
    successes = agreements = 0
    per_image: list[torch.Tensor] = []
    for x, _, target in images.batches(spec.batch_size, ctx.device, ctx.reporter.should_stop):
        x_adv = large_eps_examples(model.net, x, target, attack)  # (B, C, H, W)
        success = predicted_as(model.net, x_adv, target)  # (B,)
        successes += int(success.sum())
        if judge is not None:
            seen = predicted_as(judge.net, x_adv, target)
            agreements += int((success & seen).sum())
            per_image.append(seen.float().cpu())
        shown.add(x_adv)
    progress.advance(1, f"large eps {attack.norm} {attack.eps:g}: {model.label}")
    judged = judge is not None and successes > 0
    return LargeEpsOutcome(shown=shown.tensor(), success=successes / len(images.y),
                           agreement=agreements / successes if judged else None,
                           judged=torch.cat(per_image) if per_image else None)


def _report_attack(models: list[Model], outcomes: dict[str, LargeEpsOutcome], images: Images,
                   attack: LargeEpsAttack, spec: VisualizeSpec, judge: Model | None,
                   reporter: Reporter) -> None:
    """What ``spec.show`` asks for from one attack's examples."""
    if "large_eps" in spec.show:
        _report_large_eps(models, outcomes, images, attack, spec.target, judge, reporter)
    if "interpolation" in spec.show:
        _report_interpolations(models, outcomes, images, attack, spec.interpolation_points,
                               reporter)


def _report_large_eps(models: list[Model], outcomes: dict[str, LargeEpsOutcome], images: Images,
                      attack: LargeEpsAttack, target_rule: str, judge: Model | None,
                      reporter: Reporter) -> None:
    """E4: the measures and a picture per model, then all models side by side (Fig. 3)."""
    about = {"norm": attack.norm, "eps": attack.eps}
    originals = image_cells(images.x[: images.shown])
    arrows = images.arrows()
    for model in models:
        outcome = outcomes[model.label]
        tags = {**model.identity, **about}
        reporter.metric(MetricRecord(name="large_eps_success", value=outcome.success, tags=tags))
        if judge is not None and outcome.agreement is not None:
            reporter.metric(MetricRecord(name="target_agreement", value=outcome.agreement,
                                         tags={**tags, "judge": judge.label}))
        if judge is not None and outcome.judged is not None:
            reporter.artifact(per_example("judge_sees_target", outcome.judged,
                                          {**tags, "judge": judge.label}))
        picture = grid_png([originals, image_cells(outcome.shown)], column_titles=arrows,
                           row_titles=["image", model.label],
                           title=f"{model.label}: targeted PGD, {_attack_name(attack)}")
        reporter.artifact(ArtifactRecord(
            kind="large_eps", name=f"large_eps_{model.label}_{_suffix(attack)}.png", data=picture,
            metadata={**tags, "target": target_rule}))
    columns = [originals, *(image_cells(outcomes[m.label].shown) for m in models)]
    picture = grid_png(_transpose(columns), row_titles=arrows,
                       column_titles=["image", *(m.label for m in models)],
                       title=f"Large-eps adversarial examples, {_attack_name(attack)}")
    reporter.artifact(ArtifactRecord(kind="figure", name=f"figure_large_eps_{_suffix(attack)}.png",
                                     data=picture, metadata={"figure": "large_eps", **about}))


def _report_interpolations(models: list[Model], outcomes: dict[str, LargeEpsOutcome],
                           images: Images, attack: LargeEpsAttack, points: int,
                           reporter: Reporter) -> None:
    """E5: per model, one strip per shown image; then per image one strip per model (Fig. 4)."""
    about = {"norm": attack.norm, "eps": attack.eps}
    x = images.x[: images.shown]
    strips = {m.label: interpolate(x, outcomes[m.label].shown, points) for m in models}
    alphas = [f"{i / (points - 1):.2f}" for i in range(points)]
    arrows = images.arrows()
    for model in models:
        picture = grid_png([image_cells(strip) for strip in strips[model.label]],
                           row_titles=arrows, column_titles=alphas,
                           title=f"{model.label}: towards the large-eps example, "
                                 f"{_attack_name(attack)}")
        reporter.artifact(ArtifactRecord(
            kind="interpolation", name=f"interpolation_{model.label}_{_suffix(attack)}.png",
            data=picture, metadata={**model.identity, **about, "points": points}))
    rows = [image_cells(strips[m.label][i]) for i in range(images.shown) for m in models]
    titles = [f"{m.label} {arrows[i]}" for i in range(images.shown) for m in models]
    picture = grid_png(rows, row_titles=titles, column_titles=alphas,
                       title=f"Interpolation to the large-eps example, {_attack_name(attack)}")
    reporter.artifact(ArtifactRecord(
        kind="figure", name=f"figure_interpolation_{_suffix(attack)}.png", data=picture,
        metadata={"figure": "interpolation", **about}))


def _attack_name(attack: LargeEpsAttack) -> str:
    return f"{attack.norm} eps={attack.eps:g}"


def _suffix(attack: LargeEpsAttack) -> str:
    return f"{attack.norm}_{attack.eps:g}"


def _transpose(columns: list[list[Any]]) -> list[list[Any]]:
    """Columns of cells (one per model) as rows (one per image)."""
    return [list(row) for row in zip(*columns, strict=True)]


class _FirstRows:
    """Keeps the first ``n`` rows of a stream of batches, on the CPU."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.parts: list[torch.Tensor] = []
        self.kept = 0

    def add(self, batch: torch.Tensor) -> None:
        take = max(0, self.n - self.kept)
        if take:
            self.parts.append(batch[:take].detach().cpu())
            self.kept += len(self.parts[-1])

    def tensor(self) -> torch.Tensor:
        return torch.cat(self.parts)


def per_example(metric: str, values: torch.Tensor, tags: dict[str, Any]) -> ArtifactRecord:
    """A measure's value per image as an artifact (``PER_EXAMPLE_KIND``: float32 ``.npy``)."""
    buffer = io.BytesIO()
    np.save(buffer, values.detach().cpu().numpy().astype(np.float32), allow_pickle=False)
    where = f"_{tags['norm']}_{float(tags['eps']):g}" if "norm" in tags and "eps" in tags else ""
    return ArtifactRecord(kind=PER_EXAMPLE_KIND,
                          name=f"{metric}_{tags.get('model', 'model')}{where}.npy",
                          data=buffer.getvalue(), media_type=PER_EXAMPLE_MEDIA_TYPE,
                          metadata={**tags, "metric": metric, "n": int(values.numel())})


# --------------------------------------------------------------------------- gradients


@dataclass(frozen=True)
class GradientOutcome:
    shown: torch.Tensor  # (shown, C, H, W) on the CPU
    alignment: float
    """Mean over images of the Pearson correlation of |gradient| with the Sobel edges."""
    per_image: torch.Tensor
    """That correlation per image (CPU): paired across models on the same images."""


def _gradients(model: Model, images: Images, spec: VisualizeSpec, ctx: RunContext,
               progress: _Progress) -> GradientOutcome:
    """E6: the loss gradient of every image, its edge alignment, the shown ones kept."""
    shown = _FirstRows(images.shown)
    per_image: list[torch.Tensor] = []
    for x, y, _ in images.batches(spec.batch_size, ctx.device, ctx.reporter.should_stop):
        grad = input_gradients(model.net, x, y)  # (B, C, H, W)
        per_image.append(gradient_edge_alignment(grad, x).cpu())
        shown.add(grad)
    progress.advance(1, f"gradients: {model.label}")
    alignment = torch.cat(per_image)
    return GradientOutcome(shown=shown.tensor(), alignment=float(alignment.sum()) / len(images.y),
                           per_image=alignment)


def _report_gradients(models: list[Model], outcomes: dict[str, GradientOutcome], images: Images,
                      reporter: Reporter) -> None:
    originals = image_cells(images.x[: images.shown])
    names = [class_name(images.class_names, int(label)) for label in images.y[: images.shown]]
    for model in models:
        outcome = outcomes[model.label]
        reporter.metric(MetricRecord(name="gradient_edge_alignment", value=outcome.alignment,
                                     tags=model.identity))
        reporter.artifact(per_example("gradient_edge_alignment", outcome.per_image,
                                      model.identity))
        picture = grid_png([originals, gradient_cells(outcome.shown)], column_titles=names,
                           row_titles=["image", model.label],
                           title=f"{model.label}: loss gradient "
                                 f"(edge alignment {outcome.alignment:.2f})")
        reporter.artifact(ArtifactRecord(kind="gradients", name=f"gradients_{model.label}.png",
                                         data=picture, metadata=model.identity))
    columns = [originals, *(gradient_cells(outcomes[m.label].shown) for m in models)]
    picture = grid_png(_transpose(columns), row_titles=names,
                       column_titles=["image", *(m.label for m in models)],
                       title="Gradient of the loss with respect to the pixels")
    reporter.artifact(ArtifactRecord(kind="figure", name="figure_gradients.png", data=picture,
                                     metadata={"figure": "gradients"}))


# --------------------------------------------------------------------------- progress


def _total_units(spec: VisualizeSpec, attacks: list[LargeEpsAttack]) -> float:
    """Progress units: one per training epoch, per model and attack, per model's gradients."""
    sources = [*spec.models, *([spec.independent] if spec.independent else [])]
    epochs = sum(s.train.training.epochs for s in sources if s.train is not None)
    attacking = bool({"large_eps", "interpolation"} & set(spec.show))
    per_model = (len(attacks) if attacking else 0) + ("gradients" in spec.show)
    return epochs + per_model * len(spec.models)


class _Progress:
    """Counts finished units of work and tells the reporter."""

    def __init__(self, reporter: Reporter, total: float) -> None:
        self.reporter = reporter
        self.total = total
        self.done = 0.0

    def advance(self, units: float, stage: str) -> None:
        self.done += units
        self.reporter.progress(self.done, self.total, stage)

    def training(self, label: str, epochs: int) -> Callable[[int, int, int], None]:
        """A ``TrainHooks.on_batch`` that reports a training's epochs as progress units."""
        def on_batch(epoch: int, batches_done: int, batches: int) -> None:
            self.reporter.progress(self.done + epoch + batches_done / batches, self.total,
                                   f"training {label}: epoch {epoch + 1}/{epochs}")
        return on_batch

    def trained(self, label: str, epochs: int) -> None:
        self.advance(epochs, f"trained {label}")
