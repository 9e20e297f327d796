"""The Galleries page's grouping: one row per picture subject with the standard model first,
labels, and the metrics whose tags match a picture's metadata."""

from __future__ import annotations

import pandas as pd

from dashboard import components
from service.analysis.gallery import GALLERY_KINDS, gallery_groups, matching_metrics, model_label
from service.store import queries
from tests.dashboard.seed import Seeded


def test_labels() -> None:
    assert model_label({"model": "cnn", "train_eps": 0}) == "cnn · standard"
    assert model_label({"train_norm": "l2", "train_eps": 1.5}) == "robust (l2, ε=1.5)"
    assert model_label({"title": "a figure"}) == ""
    assert model_label({"model": "standard", "train_eps": 0.0}) == "standard"


def test_groups_put_models_of_one_picture_side_by_side(seeded: Seeded) -> None:
    groups = gallery_groups(queries.artifacts_frame(seeded.url))
    assert [g.kind for g in groups] == ["large_eps", "gradients", "figure"]
    large = groups[0]
    assert large.title == "e4_large_eps · image=3 · target=7"
    assert [i["metadata"]["train_eps"] for i in large.items] == [0.0, 0.3], "standard first"
    assert sum(len(g.items) for g in groups) == seeded.gallery_images


def test_groups_split_on_what_the_picture_shows() -> None:
    rows = pd.DataFrame([
        {"kind": "large_eps", "experiment": "e", "name": f"{image}_{eps}.png",
         "metadata": {"image": image, "train_eps": eps, "train_norm": "linf"}}
        for image in (1, 2) for eps in (0.3, 0.0)
    ])
    groups = gallery_groups(rows)
    assert [g.title for g in groups] == ["e · image=1", "e · image=2"]
    assert all([i["metadata"]["train_eps"] for i in g.items] == [0.0, 0.3] for g in groups)


def test_measurements_in_metadata_do_not_split_a_row() -> None:
    """Weight images (Fig. 2a) carry their model's ||w||_1: one row, both models side by side."""
    rows = pd.DataFrame([
        {"kind": "weights", "experiment": "e3", "name": f"{label}.png",
         "metadata": {"figure": "2a", "model": "linear", "label": label, "train_eps": eps,
                      "train_norm": "linf", "weight_l1": l1}}
        for label, eps, l1 in (("adversarial", 0.2, 13.7), ("standard", 0.0, 41.1))
    ])
    (group,) = gallery_groups(rows)
    assert group.title == "e3 · figure=2a"
    assert [i["name"] for i in group.items] == ["standard.png", "adversarial.png"]


def test_metrics_under_a_picture_are_those_whose_tags_agree(seeded: Seeded) -> None:
    metrics = queries.metrics_frame(seeded.url, run_ids=[seeded.gallery])
    robust = {"model": "mnist_cnn", "train_norm": "linf", "train_eps": 0.3, "image": 3}
    standard = robust | {"train_eps": 0.0}
    assert matching_metrics(metrics, seeded.gallery, robust) == [
        ("gradient_edge_alignment", 0.71), ("target_agreement", 0.93)]
    assert matching_metrics(metrics, seeded.gallery, standard) == [
        ("gradient_edge_alignment", 0.05), ("target_agreement", 0.11)]
    assert matching_metrics(metrics, seeded.gallery, {"title": "x"}) == []
    assert matching_metrics(metrics, "another-run", robust) == []


def test_a_metric_of_each_model_under_a_shared_figure_names_its_model() -> None:
    metrics = pd.DataFrame([
        {"run_id": "r", "name": "weight_l1", "step": 0, "value": value,
         "tags": {"train_eps": eps, "threshold": 0.3}}
        for eps, value in ((0.0, 41.08), (0.2, 13.69))
    ])
    assert matching_metrics(metrics, "r", {"figure": "2b", "threshold": 0.3}) == [
        ("weight_l1 (train_eps=0)", 41.08), ("weight_l1 (train_eps=0.2)", 13.69)]
    assert matching_metrics(metrics, "r", {"train_eps": 0.2, "threshold": 0.3}) == [
        ("weight_l1", 13.69)]


def test_last_step_of_a_matching_metric_is_shown() -> None:
    metrics = pd.DataFrame([
        {"run_id": "r", "name": "score", "step": step, "value": value, "tags": {"model": "a"}}
        for step, value in ((2, 0.3), (0, 0.1), (1, 0.2))
    ])
    assert matching_metrics(metrics, "r", {"model": "a"}) == [("score", 0.3)]


def test_a_side_by_side_figure_of_pictures_shown_is_not_drawn_again() -> None:
    """E4-E6 record each model's picture and then all of them in one figure."""
    rows = pd.DataFrame([
        {"run_id": "r", "kind": "gradients", "metadata": {"model": "a"}},
        {"run_id": "r", "kind": "figure", "metadata": {"figure": "gradients"}},
        {"run_id": "s", "kind": "figure", "metadata": {"figure": "large_eps"}},
        {"run_id": "r", "kind": "figure", "metadata": {"title": "E1"}},
    ])
    combined = components.combined_figures(rows, GALLERY_KINDS)
    assert combined.tolist() == [False, True, False, False], \
        "only where the same run's pictures of that kind are shown"
    figure = {"run_id": "r", "metadata": {"figure": "large_eps", "eps": 0.3}}
    assert components.figure_matches(figure, {"run_id": "r", "metadata": {"eps": 0.3, "m": 1}})
    assert not components.figure_matches(figure, {"run_id": "r", "metadata": {"eps": 8}})
    assert not components.figure_matches(figure, {"run_id": "q", "metadata": {"eps": 0.3}})


def test_identical_pictures_of_re_runs_are_shown_once() -> None:
    files = {"a/f.png": b"same", "b/f.png": b"same", "c/f.png": b"diff", "d/g.png": b"same"}
    rows = pd.DataFrame([
        {"id": i, "kind": "figure", "name": path.split("/")[1], "size": 4, "path": path}
        for i, path in enumerate(files, start=1)
    ])
    read: list[str] = []

    def reader(path: str) -> bytes:
        read.append(path)
        return files[path]

    kept = components.without_copies(rows, reader)
    assert kept["path"].tolist() == ["b/f.png", "c/f.png", "d/g.png"], "the newest copy"
    assert sorted(read) == ["a/f.png", "b/f.png", "c/f.png"], "only same name and size read"
