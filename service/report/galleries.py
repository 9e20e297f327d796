"""The picture sections (E4-E6): large-ε examples, interpolations and loss gradients of
standard and robust models side by side, with the measures that decide their claims."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from contract.records import PER_EXAMPLE_KIND
from service.analysis.claims import no_data, robust_higher_claim
from service.analysis.gallery import (
    Attack,
    ModelLabel,
    attack_of,
    attack_order,
    attack_text,
    measured,
    model_labels,
    model_of,
    model_order,
)
from service.analysis.paper import PAPER_SCALE, Scale
from service.analysis.scale import combined_scale, is_npm_subset, run_scale
from service.report.document import Section
from service.report.inputs import ReportInputs
from service.report.render import copy_name, image, markdown_table, run_hint
from service.store.entities import ArtifactInfo, RunInfo


@dataclass(frozen=True)
class Gallery:
    """One of the picture sections: which artifacts, which measure, which spec to run."""

    label: str
    title: str
    artifact_kind: str
    spec: str
    paper: str
    metric: str | None = None
    claim: str = ""
    per_image: str | None = None
    """The per-image measure the claim's paired test reads (``PER_EXAMPLE_KIND`` artifacts)."""


GALLERIES = (
    Gallery("Figures 3, 6, 7", "Figures 3, 6, 7 (E4): large-ε adversarial examples", "large_eps",
            "specs/paper/e4_large_eps.yaml",
            "The paper: targeted PGD far outside the training ε makes robust models' inputs "
            "look like the target class and standard models' look like noise. Measure: how "
            "often an independently trained model classifies the examples as the target "
            "(`target_agreement`, among the examples the attacked model itself sees as the "
            "target). The claim's paired test compares the models image by image on the same "
            "images: whether the judge sees each model's example as the target "
            "(`judge_sees_target`, defined on every image).",
            "target_agreement",
            "large-ε examples are classified as the target more often for robust models",
            "judge_sees_target"),
    Gallery("Figure 4", "Figure 4 (E5): interpolation to the large-ε example", "interpolation",
            "specs/paper/e5_interpolation.yaml",
            "The paper: for robust models the path from the image to its large-ε adversarial "
            "example is perceptually smooth between the classes."),
    Gallery("Figures 5, 8", "Figures 5, 8 (E6): loss gradients", "gradients",
            "specs/paper/e6_gradients.yaml",
            "The paper: robust models' input gradients align with edges and shapes, standard "
            "models' look like noise. Measure: correlation of |gradient| with the image's Sobel "
            "edges (`gradient_edge_alignment`).",
            "gradient_edge_alignment",
            "input gradients align with image edges more for robust models",
            "gradient_edge_alignment"),
)



def gallery_grid(artifacts: Sequence[ArtifactInfo], labels: dict[str, ModelLabel]) -> str:
    """Pictures side by side: a column per model, a row per attack (norm, ε) when given."""
    cells: dict[Attack, dict[ModelLabel, list[ArtifactInfo]]] = defaultdict(
        lambda: defaultdict(list))
    unlabelled = []
    for artifact in artifacts:
        model = model_of(artifact.metadata, labels)
        if model is None:
            unlabelled.append(artifact)
        else:
            cells[attack_of(artifact.metadata)][model].append(artifact)
    columns = sorted({model for row in cells.values() for model in row}, key=model_order)
    rows = [[attack_text(attack), *(" ".join(image(copy_name(a), a.name)
                                            for a in by_model.get(model, [])) or "–"
                                   for model in columns)]
            for attack, by_model in sorted(cells.items(), key=lambda item: attack_order(item[0]))]
    parts = [markdown_table(["attack", *(m.describe() for m in columns)], rows)] if rows else []
    parts += [image(copy_name(a), a.name) for a in unlabelled]
    return "\n\n".join(parts)



def visualized_scale(inputs: ReportInputs, run: RunInfo,
                     images: int | None) -> tuple[Scale | None, Scale | None]:
    """The scale of a visualize run's claim: its models' training (the weakest of the runs
    that trained them, where the spec names them by run id) and the images it measured."""
    spec = run.resolved_spec
    models = spec.get("models")
    sources = [model.get("run") if isinstance(model, dict) else None
               for model in (models if isinstance(models, list) else [])]
    by_id = {r.id: r for r in inputs.runs}
    trained = [by_id[source] for source in sources if source in by_id]
    if images is None or not trained or len(trained) != len(sources):
        return None, None
    rows = inputs.rows_of(trained)
    npm = is_npm_subset(trained, rows)
    scale = combined_scale([run_scale(source, images, npm) for source in trained])
    return scale, PAPER_SCALE.get(str((spec.get("dataset") or {}).get("name")))


def gallery_section(inputs: ReportInputs, gallery: Gallery) -> Section:
    section = Section(gallery.title, [gallery.paper])
    pictures = [a for a in inputs.artifacts if a.kind == gallery.artifact_kind]
    scores = [m for m in inputs.metrics if m.name == gallery.metric]
    run_ids = [run.id for run in inputs.runs
               if any(a.run_id == run.id for a in pictures)
               or any(m.run_id == run.id for m in scores)]
    if not run_ids:
        section.markdown.append(f"No {gallery.label} runs yet: {run_hint(gallery.spec)}")
        if gallery.metric:
            section.claims.append(no_data(gallery.label, gallery.claim, f"run {gallery.spec}"))
        return section
    runs = {run.id: run for run in inputs.runs}
    for run_id in run_ids:
        section.run_ids.add(run_id)
        section.markdown.append(f"### Run `{run_id}` ({runs[run_id].experiment})")
        labels = model_labels(a.metadata for a in inputs.artifacts if a.run_id == run_id)
        mine = [a for a in pictures if a.run_id == run_id]
        combined = [a for a in inputs.artifacts_of([run_id], ["figure"])
                    if a.metadata.get("figure") == gallery.artifact_kind]
        section.copies |= {copy_name(a): a for a in (*mine, *combined)}
        if mine:
            section.markdown.append(gallery_grid(mine, labels))
        if combined:
            section.markdown.append("The run's side-by-side figures: " + " ".join(
                image(copy_name(a), a.name) for a in combined))
        if gallery.metric:
            values = measured((m for m in scores if m.run_id == run_id), labels)
            if values:
                section.markdown.append(markdown_table(
                    ["model", "attack", gallery.metric, "values averaged"],
                    [[v.model.describe(), attack_text(v.attack), f"{v.value:.3f}", str(v.count)]
                     for v in values]))
            per_image = {(model, attack_of(a.metadata)): inputs.per_image[a.path]
                         for a in inputs.artifacts_of([run_id], [PER_EXAMPLE_KIND])
                         if a.metadata.get("metric") == gallery.per_image and a.path in
                         inputs.per_image and (model := model_of(a.metadata, labels)) is not None}
            label = gallery.label if len(run_ids) == 1 else f"{gallery.label} {run_id}"
            measured_images = min((len(v) for v in per_image.values()), default=None)
            scale, paper = visualized_scale(inputs, runs[run_id], measured_images)
            section.claims.append(robust_higher_claim(label, gallery.claim, gallery.metric,
                                                      f"run {gallery.spec}", values, per_image,
                                                      scale, paper))
    return section
