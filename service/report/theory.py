"""The E1 section: the theory's models against their closed forms and Theorem 2.1's bound."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from matplotlib.figure import Figure

from service.analysis.claims import E1_CLAIMS, no_data, theory_claims
from service.analysis.common import Row
from service.analysis.theory import TheoryPoint, TheoryRun, bound_curve, theory_run
from service.report.document import Section
from service.report.inputs import ReportInputs
from service.report.render import (
    E1_SPEC,
    copy_name,
    image,
    latex_table,
    markdown_table,
    num,
    pct,
    png,
    run_hint,
    safe_name,
)

E1_TITLE = "E1: the theory (Sec. 2.1-2.2, Theorems 2.1 and 2.2)"


def theory_figure(item: TheoryRun) -> bytes:
    """Adversarial against standard accuracy at ε ≥ 2η, with Theorem 2.1's line."""
    figure = Figure(figsize=(5.5, 4.2))
    axes = figure.add_subplot()
    axes.plot(*zip(*bound_curve(item.dist.p), strict=True), "k--", label="Theorem 2.1 bound")
    by_model: dict[str, list[TheoryPoint]] = defaultdict(list)
    for point in item.attacked():
        by_model[point.model].append(point)
    for (model, points), marker in zip(sorted(by_model.items()), "osd^v", strict=False):
        axes.scatter([p.standard for p in points], [p.accuracy for p in points],
                     marker=marker, label=model, alpha=0.8)
    axes.set(xlabel="standard accuracy", ylabel="adversarial accuracy (ε ≥ 2η)",
             xlim=(0, 1.02), ylim=(-0.02, 1.02),
             title=f"p={item.dist.p:g}, d={item.dist.d}, η={item.dist.eta:.4g}")
    axes.legend(loc="upper right", fontsize=8)
    return png(figure)


def theory_table(item: TheoryRun) -> tuple[list[str], list[list[str]]]:
    header = ["model", "train ε", "eval ε", "std acc", "adv acc", "closed form",
              "Thm 2.1 bound", "|w1|", "‖w_rest‖₁"]
    rows = []
    for p in item.points:
        w1, rest = item.weights.get((p.model, p.train_eps), (None, None))
        rows.append([p.model, num(p.train_eps), num(p.eval_eps), pct(p.standard),
                     pct(p.accuracy) if p.eval_eps > 0 else "–", pct(p.closed_form),
                     pct(p.bound), num(w1), num(rest)])
    return header, rows


def transfer_table(rows: Sequence[Row]) -> str:
    body = [[r["variant"].removeprefix("transfer:"), num(r["eval_eps"]), pct(r["accuracy"]),
             pct((r.get("details") or {}).get("target_standard_accuracy"))] for r in rows]
    return ("Transfer (end of Sec. 2.2): worst-case examples against the source, shown to a "
            "target trained on an independent sample.\n\n"
            + markdown_table(["source → target", "ε", "target acc", "target std acc"], body))


def theory_section(inputs: ReportInputs) -> Section:
    section = Section(E1_TITLE)
    runs = inputs.runs_of_kind("theory")
    section.markdown.append(
        "The paper (p = 0.7, η ≥ 4/√d): f_avg and the standard SVM have > 99% standard and "
        "< 1% adversarial accuracy at ε = 2η; the adversarially trained SVM puts all weight on "
        "x1 and has 70% of both; Theorem 2.1 caps adversarial accuracy at p/(1−p)·δ = 7/3·δ "
        "for standard accuracy 1 − δ (clipped to [0, 1]). Accuracies in %; `closed form` is "
        "f_avg's Φ((η − ε)√d).")
    if not runs:
        section.markdown.append(f"No E1 runs yet: {run_hint(E1_SPEC)}")
        section.claims = [no_data("E1", text, f"run {E1_SPEC}") for text in E1_CLAIMS]
        return section
    latex = []
    for run in runs:
        item = theory_run(run, inputs.rows_of([run]), inputs.metrics)
        section.run_ids.add(run.id)
        label = "E1" if len(runs) == 1 else f"E1 {run.id}"
        section.markdown.append(
            f"### Run `{run.id}` ({run.experiment}): p = {item.dist.p:g}, d = {item.dist.d}, "
            f"η = {item.dist.eta:.4g} (2η = {2 * item.dist.eta:.4g})")
        header, rows = theory_table(item)
        section.markdown.append(markdown_table(header, rows))
        latex.append(latex_table(header, rows, align="llrrrrrrr", caption=(
            f"E1 run {run.id}: p={item.dist.p:g}, d={item.dist.d}, eta={item.dist.eta:.4g}; "
            "accuracies in %")))
        name = safe_name(f"e1_tradeoff_{run.id}.png")
        section.figures[name] = theory_figure(item)
        section.markdown.append(image(name, "adversarial vs standard accuracy, regenerated"))
        own = [a for a in inputs.artifacts_of([run.id], ["figure"])
               if a.name != "e1_tradeoff.png"]
        # The run's own e1_tradeoff.png is the science's drawing of the same figure as the
        # one regenerated above: linking both would show E1's figure twice.
        for artifact in own:
            section.copies[copy_name(artifact)] = artifact
        if own:
            section.markdown.append("The run's own pictures: " + " ".join(
                image(copy_name(a), a.name) for a in own))
        if item.transfer:
            section.markdown.append(transfer_table(item.transfer))
        section.claims += theory_claims(item, label)
    section.tables["e1_theory.tex"] = "\n".join(latex)
    return section
