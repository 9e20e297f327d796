"""The Trade-offs charts: the data each one plots (plain pandas, tested) and its Altair chart.

- Figure 1: standard accuracy against eps_train, per dataset and training norm.
- Adversarial against standard accuracy, with Theorem 2.1's bound for the theory runs:
  adversarial accuracy <= p/(1-p) * (1 - standard accuracy) against l_inf eps >= 2*eta.
- Figure 2(c): standard and adversarial accuracy of a linear model trained on the k most
  label-correlated pixels, against k (rows whose ``variant`` is ``topk=K``).
"""

from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd

STANDARD_NORM = "standard"
"""The norm label of rows trained without an adversary and without a norm (theory runs)."""
PAIR_KEYS = ["run_id", "experiment", "kind", "model", "dataset", "split", "train_norm",
             "train_eps", "variant"]
"""What a standard and an adversarial accuracy share when they describe one model."""
TOPK = r"^topk=(\d+)$"
BOUND_APPLIES, BOUND_OUTSIDE, NO_BOUND = "bound holds (ε ≥ 2η)", "ε < 2η", "not a theory run"


def _clean(frame: pd.DataFrame) -> pd.Series:
    return (frame["attack"] == "none") & (frame["eval_eps"] == 0)


# --------------------------------------------------------------------------- Figure 1


def figure1_data(evaluations: pd.DataFrame) -> pd.DataFrame:
    """Mean standard accuracy per experiment, dataset, model, training norm and eps_train.

    Runs of one experiment at one eps_train (repeated seeds) are averaged; experiments are not
    (the quickstart's 2-epoch CNN is not E2's), so each has its own curve, as in the report. A
    standard model with no training norm (theory runs) starts the curve of every norm of its
    dataset and model, so each norm's curve begins at eps_train 0.
    """
    rows = evaluations[_clean(evaluations) & (evaluations["variant"] == "")]
    rows = _standard_rows_join_each_norm(rows)
    columns = ["dataset", "experiment", "model", "train_norm", "train_eps"]
    grouped = rows.groupby(columns, dropna=False)
    return (
        grouped.agg(accuracy=("accuracy", "mean"), runs=("run_id", "nunique"), n=("n", "sum"))
        .reset_index()
        .sort_values(columns, ignore_index=True)
    )


def _standard_rows_join_each_norm(rows: pd.DataFrame) -> pd.DataFrame:
    named = rows[rows["train_norm"].notna()]
    norms = named[["dataset", "experiment", "model", "train_norm"]].drop_duplicates()
    unnamed = rows[rows["train_norm"].isna()].drop(columns="train_norm")
    joined = unnamed.merge(norms, on=["dataset", "experiment", "model"], how="left")
    joined["train_norm"] = joined["train_norm"].fillna(STANDARD_NORM)
    return pd.concat([named, joined], ignore_index=True)


def figure1_chart(data: pd.DataFrame) -> alt.FacetChart:
    """One panel per dataset (its own eps scale); colour is the training norm."""
    return (
        alt.Chart(data)
        .mark_line(point=True)
        .encode(
            x=alt.X("train_eps:Q", title="ε_train"),
            y=alt.Y("accuracy:Q", title="standard accuracy", scale=alt.Scale(zero=False),
                    axis=alt.Axis(format="%")),
            color=alt.Color("train_norm:N", title="training norm"),
            strokeDash=alt.StrokeDash("model:N"),
            detail="experiment:N",  # one line per experiment
            tooltip=["experiment", "dataset", "model", "train_norm",
                     alt.Tooltip("train_eps:Q", format=".4g"),
                     alt.Tooltip("accuracy:Q", format=".2%"), "runs", "n"],
        )
        .properties(width=260, height=220)
        .facet(column=alt.Column("dataset:N", title=None))
        .resolve_scale(x="independent")
    )


# --------------------------------------------------------------------------- std vs adv


def adversarial_pairs(evaluations: pd.DataFrame, theory: pd.DataFrame) -> pd.DataFrame:
    """Each adversarial accuracy beside the standard accuracy of the same model.

    For theory runs, ``p`` and ``eta`` come along, and ``bound_applies`` says whether the
    evaluation radius reaches 2*eta, where Theorem 2.1's bound holds.
    """
    plain = evaluations[evaluations["variant"] == ""]
    standard = plain[_clean(plain)][PAIR_KEYS + ["accuracy"]].rename(
        columns={"accuracy": "std_accuracy"}
    )
    adversarial = plain[plain["attack"] != "none"][
        PAIR_KEYS + ["attack", "eval_norm", "eval_eps", "accuracy"]
    ].rename(columns={"accuracy": "adv_accuracy"})
    pairs = adversarial.merge(standard, on=PAIR_KEYS).merge(
        theory[["run_id", "p", "eta"]], on="run_id", how="left"
    )
    applies = (pairs["eval_norm"] == "linf") & (pairs["eval_eps"] >= 2 * pairs["eta"] - 1e-12)
    theory = pairs["p"].notna()
    region = np.where(~theory, NO_BOUND, np.where(applies, BOUND_APPLIES, BOUND_OUTSIDE))
    return pairs.assign(bound_applies=applies.where(theory), theorem_2_1=region)


def bound_data(ps: list[float], points: int = 101) -> pd.DataFrame:
    """Theorem 2.1's line y = p/(1-p) * (1 - x) for each p, where it is below accuracy 1.

    The line reaches 1 at x = (2p - 1)/p; left of that the bound says nothing.
    """
    frames = []
    for p in sorted(set(ps)):
        x = np.linspace((2 * p - 1) / p, 1.0, points)
        frames.append(pd.DataFrame({"std_accuracy": x, "adv_accuracy": p / (1 - p) * (1 - x),
                                    "bound": f"Theorem 2.1, p={p:g}"}))
    if not frames:
        return pd.DataFrame(columns=["std_accuracy", "adv_accuracy", "bound"])
    return pd.concat(frames, ignore_index=True)


def tradeoff_chart(pairs: pd.DataFrame, bounds: pd.DataFrame) -> alt.LayerChart:
    """Points (colour = model, shape = attack) and the dashed bound lines."""
    accuracy = alt.Scale(domain=[0, 1])
    points = (
        alt.Chart(pairs)
        .mark_point(filled=True, size=70)
        .encode(
            x=alt.X("std_accuracy:Q", title="standard accuracy", scale=accuracy,
                    axis=alt.Axis(format="%")),
            y=alt.Y("adv_accuracy:Q", title="adversarial accuracy", scale=accuracy,
                    axis=alt.Axis(format="%")),
            color=alt.Color("model:N"),
            shape=alt.Shape("attack:N"),
            opacity=alt.Opacity("theorem_2_1:N", title="Theorem 2.1",
                                scale=alt.Scale(domain=[BOUND_APPLIES, BOUND_OUTSIDE, NO_BOUND],
                                                range=[1.0, 0.3, 1.0])),
            tooltip=["experiment", "dataset", "model", "train_norm",
                     alt.Tooltip("train_eps:Q", format=".4g"), "attack",
                     alt.Tooltip("eval_eps:Q", format=".4g"),
                     alt.Tooltip("std_accuracy:Q", format=".2%"),
                     alt.Tooltip("adv_accuracy:Q", format=".2%"), "theorem_2_1"],
        )
    )
    lines = (
        alt.Chart(bounds)
        .mark_line(strokeDash=[6, 4], color="black")
        .encode(x="std_accuracy:Q", y="adv_accuracy:Q", detail="bound:N",
                tooltip=["bound"])
    )
    layers = [points] if bounds.empty else [lines, points]
    return alt.LayerChart(layer=layers, height=380)


# --------------------------------------------------------------------------- Figure 2(c)


def topk_data(evaluations: pd.DataFrame) -> pd.DataFrame:
    """Rows of ``topk=K`` variants with K, and a series name: standard or the attack used."""
    k = evaluations["variant"].str.extract(TOPK, expand=False)
    rows = evaluations[k.notna()].assign(k=k.dropna().astype(int))
    series = [
        "standard" if clean else f"adversarial ({attack}, ε={eps:g})"
        for clean, attack, eps in zip(_clean(rows), rows["attack"], rows["eval_eps"], strict=True)
    ]
    return (
        rows.assign(series=series)[
            ["experiment", "run_id", "dataset", "model", "train_norm", "train_eps", "k",
             "series", "accuracy", "n"]
        ]
        .sort_values(["experiment", "run_id", "series", "k"], ignore_index=True)
    )


def topk_chart(data: pd.DataFrame) -> alt.Chart:
    return (
        alt.Chart(data)
        .mark_line(point=True)
        .encode(
            x=alt.X("k:Q", title="k (most label-correlated pixels kept)"),
            y=alt.Y("accuracy:Q", title="accuracy", axis=alt.Axis(format="%")),
            color=alt.Color("series:N", title=None),
            detail="run_id:N",
            tooltip=["experiment", "model", "k", "series",
                     alt.Tooltip("accuracy:Q", format=".2%"), "n"],
        )
        .properties(height=320)
    )
