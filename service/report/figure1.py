"""The Figure 1 section (E2): standard accuracy against the training ε, every attack beside it.

The points are ``service.analysis.figure1.figure1_points`` (mean ± std over repeats, the
newest spec per cell), the same the dashboard draws.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

from matplotlib.figure import Figure

from service.analysis.claims import beta_claim, falls_claim, falls_text, no_data
from service.analysis.common import attack_name
from service.analysis.figure1 import (
    CurveKey,
    Figure1Point,
    dataset_rank,
    figure1_points,
    lone_trades,
    standard_curves,
    trades_frontiers,
)
from service.analysis.paper import PAPER_SCALE, TABLE2_EPS, Scale
from service.analysis.scale import combined_scale, dataset_title, is_npm_subset, run_scale
from service.report.document import Section
from service.report.inputs import ReportInputs
from service.report.render import (
    FIG1_SPECS,
    image,
    latex_table,
    markdown_table,
    num,
    pct_std,
    png,
    run_hint,
)

FIG1_TITLE = "Figure 1 (E2): standard accuracy against the training ε"
def _curve_title(key: CurveKey, npm: bool) -> str:
    dataset, norm, experiment, method, model = key
    trained = f", {method}" if method else ""
    return f"{dataset_title(dataset, npm)} ({norm}{trained}), {experiment}, {model}"


def _shown_attacks(attacked: Sequence[Figure1Point]) -> list[tuple[str, float]]:
    """(attack, radius) lines to draw; the worst case only where it combines several attacks
    (alone it equals the one attack and would hide its line)."""
    pairs = sorted({(p.attack, p.eval_eps) for p in attacked})
    return [(attack, eps) for attack, eps in pairs if attack != "worst_case"
            or sum(1 for a, e in pairs if e == eps and a != "worst_case") > 1]


def figure1_figure(curves: dict[CurveKey, list[Figure1Point]],
                   points: Sequence[Figure1Point], npm: bool) -> bytes:
    """One panel per curve: standard accuracy (solid, ± std over repeats) and each attack at
    each radius of the curve's norm (dashed) against ε_train; one panel per TRADES frontier,
    the same against β."""
    panels: list[tuple[str, str, list[tuple[float, Figure1Point]], list[Figure1Point]]] = []
    for key, standard in curves.items():
        if lone_trades(key, standard):
            continue
        attacked = [p for p in points if p.curve == key and not p.standard
                    and p.eval_norm == key[1]]
        panels.append((_curve_title(key, npm), "ε_train", [(p.train_eps, p) for p in standard],
                       attacked))
    for frontier, by_beta in trades_frontiers(curves).items():
        dataset, norm, experiment, model, eps = frontier
        betas = {point.train_method: beta for beta, point in by_beta}
        attacked = [p for p in points if p.train_method in betas and not p.standard
                    and (p.dataset, p.train_norm, p.experiment, p.model, p.train_eps)
                    == frontier and p.eval_norm == norm]
        title = (f"{dataset_title(dataset, npm)} ({norm}, TRADES at ε {eps:.4g}), "
                 f"{experiment}, {model}")
        panels.append((title, "β", by_beta,
                       [replace(p, train_eps=betas[p.train_method]) for p in attacked]))
    columns = min(3, len(panels))
    rows = math.ceil(len(panels) / columns)
    figure = Figure(figsize=(4.4 * columns, 3.5 * rows))
    for index, (title, xlabel, clean, attacked) in enumerate(panels, 1):
        axes = figure.add_subplot(rows, columns, index)
        axes.errorbar([x for x, _ in clean], [100 * p.accuracy for _, p in clean],
                      yerr=[100 * (p.accuracy_std or 0.0) for _, p in clean], fmt="o-",
                      capsize=3, label="standard accuracy")
        for attack, eps in _shown_attacks(attacked):
            line = sorted((p for p in attacked if (p.attack, p.eval_eps) == (attack, eps)),
                          key=lambda p: p.train_eps)  # β, in a frontier's panel
            axes.plot([p.train_eps for p in line], [100 * p.accuracy for p in line], "s--",
                      label=f"{attack_name(attack)} accuracy, ε={eps:.4g}")
        if xlabel == "β":
            axes.set_xscale("log")
            axes.set_xticks([x for x, _ in clean], [f"{x:g}" for x, _ in clean])
            axes.minorticks_off()
        axes.set(title=title, xlabel=xlabel, ylabel="test accuracy (%)")
        axes.title.set_fontsize(8)
        axes.legend(fontsize=7)
    figure.tight_layout()
    return png(figure)


def _table(curves: dict[CurveKey, list[Figure1Point]], points: Sequence[Figure1Point],
           npm: bool) -> tuple[list[str], list[list[str]]]:
    attacks = sorted({p.attack for p in points if not p.standard},
                     key=lambda a: (a != "pgd", a))
    methods = any(key[3] for key in curves)
    header = ["dataset", "norm", *(["method"] if methods else []), "experiment", "ε_train",
              "std acc", "seeds", *(f"{attack_name(a)} acc" for a in attacks), "runs"]
    rows = []
    for key, standard in curves.items():
        dataset, norm, experiment, method, _ = key
        for point in standard:
            same = [p for p in points if p.curve == key and p.train_eps == point.train_eps
                    and not p.standard and p.eval_norm == norm]
            cells = ["; ".join(f"{pct_std(p.accuracy, p.accuracy_std)} (ε={p.eval_eps:.4g})"
                               for p in sorted(same, key=lambda p: p.eval_eps)
                               if p.attack == attack) or "–" for attack in attacks]
            rows.append([dataset_title(dataset, npm), norm, *([method or "–"] if methods else []),
                         experiment, num(point.train_eps),
                         pct_std(point.accuracy, point.accuracy_std), str(point.seeds), *cells,
                         " ".join(f"`{run_id}`" for run_id in point.run_ids)])
    return header, rows


def _rank(key: CurveKey) -> tuple[int, str, int, str, str, str]:
    dataset, norm, experiment, method, model = key
    return (dataset_rank(dataset), dataset, ("linf", "l2").index(norm)
            if norm in ("linf", "l2") else 2, experiment, method or "", model)


def figure1_section(inputs: ReportInputs) -> Section:
    section = Section(FIG1_TITLE)
    section.markdown.append(
        "The paper (Fig. 1): with PGD adversarial training, standard accuracy declines steadily "
        "as ε_train grows (Table 2's largest radii: MNIST l_inf 0.3, l_2 1.5; CIFAR-10 l_inf "
        "4/255, l_2 80/255; Restricted ImageNet l_inf 0.005, l_2 1). One curve per dataset, "
        "norm, experiment, training method and model; each point is the mean ± std over "
        "repeats that differ only by the seed. Every attack run at a radius of the curve's "
        "norm has its own column.")
    runs = inputs.runs_of_kind("train")
    rows = inputs.rows_of(runs)
    points = figure1_points(rows, runs)
    npm = is_npm_subset(runs, rows)
    curves = dict(sorted(standard_curves(points).items(), key=lambda item: _rank(item[0])))
    missing = [d for d in FIG1_SPECS if not any(k[0] == d for k in curves)]
    section.markdown += [f"No {d} runs yet: {run_hint(FIG1_SPECS[d])}" for d in missing]
    by_id = {run.id: run for run in runs}

    def scale_of(points_: Sequence[Figure1Point]) -> Scale | None:
        ids = {run_id for p in points_ for run_id in p.run_ids}
        return combined_scale([run_scale(by_id[i], _test_examples(rows, i), npm)
                               for i in sorted(ids)])

    for key, standard in curves.items():
        if lone_trades(key, standard):
            continue  # judged by its frontier over β below
        if len(standard) < 2:
            continue  # one training ε (a demo, a recipe) is a point, not a curve to judge
        section.claims.append(falls_claim(key, standard, scale_of(standard),
                                          PAPER_SCALE.get(key[0])))
    for frontier, by_beta in trades_frontiers(curves).items():
        section.claims.append(beta_claim(frontier, by_beta, scale_of([p for _, p in by_beta]),
                                         PAPER_SCALE.get(frontier[0])))
    for dataset, norm in TABLE2_EPS:
        if dataset in missing:
            section.claims.append(no_data("Figure 1", falls_text(dataset, norm),
                                          f"run {FIG1_SPECS[dataset]}"))
    if not curves:
        return section
    section.run_ids |= {i for points_ in curves.values() for p in points_ for i in p.run_ids}
    header, body = _table(curves, points, npm)
    section.markdown.append(markdown_table(header, body))
    section.figures["figure1.png"] = figure1_figure(curves, points, npm)
    section.markdown.append(image("figure1.png", "Figure 1, regenerated"))
    section.tables["figure1.tex"] = latex_table(
        header[:-1], [row[:-1] for row in body],
        align="".join("r" if h in ("ε_train", "std acc", "seeds") else "l" for h in header[:-1]),
        caption="Figure 1: standard and adversarial test accuracy (%) against the training eps")
    return section


def _test_examples(rows: Sequence[dict[str, object]], run_id: str) -> int | None:
    return next((int(str(r["n"])) for r in rows if r["run_id"] == run_id
                 and r["split"] == "test" and r["attack"] == "none"), None)
