"""Galleries: large-eps adversarial examples, interpolations, loss gradients and weights of
standard and robust models side by side, with the measured alignment numbers under them."""

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


def group_row(group: Group, metrics: pd.DataFrame) -> None:
    st.markdown(f"**{group.title}**")
    width = max(2, min(len(group.items), MAX_COLUMNS))  # a lone figure gets half the page
    for start in range(0, len(group.items), width):
        items = group.items[start:start + width]
        for column, item in zip(st.columns(width), items, strict=False):
            with column:
                picture(item, metrics)


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
    groups = gallery_groups(artifacts)
    metrics = components.metrics(url, tuple(sorted(artifacts["run_id"].unique())))
    shown = groups[components.page_bounds(len(groups), "galleries_page", GROUPS_PER_PAGE)]
    kind = None
    for group in shown:
        if group.kind != kind:
            kind = group.kind
            st.subheader(GALLERY_KINDS[kind])
        group_row(group, metrics)
