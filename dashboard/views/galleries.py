"""Galleries: large-eps adversarial examples, interpolations, loss gradients and weights of
standard and robust models side by side, with the measured alignment numbers under them.

Each picture is drawn once: a run's side-by-side figure of pictures shown here already is a
download under them (``components.combined_figures``), and identical pictures of re-runs are
shown once, the newest (``components.without_copies``)."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from dashboard import components
from service.analysis.gallery import (
    GALLERY_KINDS,
    Group,
    gallery_groups,
    matching_metrics,
    model_label,
)

GROUPS_PER_PAGE = 10
MAX_COLUMNS = 4


def picture(item: dict[str, Any], metrics: pd.DataFrame) -> None:
    """One artifact with its model label and the metrics that describe it."""
    data = components.artifact_bytes(components.artifact_dir(), item["path"])
    label = model_label(item["metadata"] or {}) or item["name"]
    if str(item["media_type"]).startswith("image/"):
        st.image(data, caption=label, width="stretch", output_format="PNG")
    else:
        st.markdown(f"**{label}**")
        st.download_button(item["name"], data, file_name=item["name"], mime=item["media_type"],
                           key=f"gallery_file_{item['id']}")
    for name, value in matching_metrics(metrics, item["run_id"], item["metadata"] or {}):
        st.caption(f"{name} = {value:.4g}")


def group_row(group: Group, metrics: pd.DataFrame, combined: list[dict[str, Any]],
              offered: set[int]) -> None:
    st.markdown(f"**{group.title}**")
    width = max(2, min(len(group.items), MAX_COLUMNS))  # a lone figure gets half the page
    for start in range(0, len(group.items), width):
        items = group.items[start:start + width]
        for column, item in zip(st.columns(width), items, strict=False):
            with column:
                picture(item, metrics)
    for figure in combined:
        if figure["id"] in offered or (figure["metadata"] or {}).get("figure") != group.kind \
                or not any(components.figure_matches(figure, item) for item in group.items):
            continue
        offered.add(figure["id"])
        data = components.artifact_bytes(components.artifact_dir(), figure["path"])
        st.download_button("These pictures side by side (PNG)", data, file_name=figure["name"],
                           mime=figure["media_type"], key=f"gallery_combined_{figure['id']}")


url = components.require_database()
st.title("Galleries")
artifacts = components.artifacts(url)
artifacts = artifacts[artifacts["kind"].isin(GALLERY_KINDS)]
if artifacts.empty:
    st.info("No pictures yet: the large-ε, interpolation, gradient and weight experiments "
            "(specs/paper/) write them.")
else:
    left, right = st.columns(2)
    kinds = left.multiselect("Kind", [k for k in GALLERY_KINDS if k in set(artifacts["kind"])],
                             format_func=GALLERY_KINDS.__getitem__, key="galleries_kinds")
    chosen = right.multiselect("Experiment", sorted(artifacts["experiment"].unique()),
                               key="galleries_experiments")
    if kinds:
        artifacts = artifacts[artifacts["kind"].isin(kinds)]
    if chosen:
        artifacts = artifacts[artifacts["experiment"].isin(chosen)]
    is_combined = components.combined_figures(artifacts, GALLERY_KINDS)
    combined = components.records(artifacts[is_combined])
    pictures = components.without_copies(
        artifacts[~is_combined],
        lambda path: components.artifact_bytes(components.artifact_dir(), path))
    groups = gallery_groups(pictures)
    metrics = components.metrics(url, tuple(sorted(artifacts["run_id"].unique())))
    shown = groups[components.page_bounds(len(groups), "galleries_page", GROUPS_PER_PAGE)]
    kind = None
    offered: set[int] = set()
    for group in shown:
        if group.kind != kind:
            kind = group.kind
            st.subheader(GALLERY_KINDS[kind])
        group_row(group, metrics, combined, offered)
