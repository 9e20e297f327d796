"""A lab's own data: image folders (real Fashion-MNIST images) and npz files, and their errors."""

from __future__ import annotations

import gzip
from collections.abc import Sized
from pathlib import Path
from typing import cast

import numpy as np
import pytest
import torch
from PIL import Image

from contract.records import MemoryReporter
from contract.specs.data import DatasetConfig
from contract.specs.kinds import TrainSpec
from workers.science.context import RunContext
from workers.science.datasets import (
    MalformedDataError,
    MissingDataError,
    data_hash,
    dataset_info,
    load_dataset,
)
from workers.science.experiments.train import run as train_run

FASHION = Path("/usr/share/datasets/fashion-mnist")
"""Real Fashion-MNIST from the Debian package dataset-fashion-mnist (IDX files, gzipped)."""
CLASSES = {1: "trouser", 7: "sneaker", 8: "bag"}
"""Three Fashion-MNIST classes, as folder names (sorted: bag, sneaker, trouser)."""
TRAIN_PER_CLASS, TEST_PER_CLASS = 400, 100
CPU = torch.device("cpu")


def read_idx(name: str, header: int) -> np.ndarray:
    path = FASHION / name
    if not path.is_file():
        pytest.fail(f"{path} missing: apt-get install dataset-fashion-mnist")
    with gzip.open(path) as handle:
        return np.frombuffer(handle.read(), dtype=np.uint8, offset=header)


def write_split(folder: Path, split: str, per_class: int) -> None:
    prefix = "train" if split == "train" else "t10k"
    images = read_idx(f"{prefix}-images-idx3-ubyte.gz", 16).reshape(-1, 28, 28)
    labels = read_idx(f"{prefix}-labels-idx1-ubyte.gz", 8)
    for label, name in CLASSES.items():
        (folder / split / name).mkdir(parents=True)
        for index in np.flatnonzero(labels == label)[:per_class]:
            Image.fromarray(images[index]).save(folder / split / name / f"{index}.png")


@pytest.fixture(scope="module")
def fashion_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """1,500 real Fashion-MNIST images in ImageFolder layout: 1,200 train/, 300 test/."""
    root = tmp_path_factory.mktemp("fashion_folder")
    write_split(root, "train", TRAIN_PER_CLASS)
    write_split(root, "test", TEST_PER_CLASS)
    return root


def folder_cfg(root: Path, **extra: object) -> DatasetConfig:
    return DatasetConfig.model_validate({"name": "image_folder", "root": str(root), "channels": 1,
                                         **extra})


def test_image_folder_classes_shapes_and_fair_prefix(fashion_folder: Path) -> None:
    cfg = folder_cfg(fashion_folder, train_subset=30)
    info = dataset_info(cfg, fashion_folder)
    assert info.class_names == ("bag", "sneaker", "trouser")
    assert (info.num_classes, info.input_shape, info.normalization) == (3, (1, 28, 28), None)
    data = load_dataset(cfg, fashion_folder, train=True)
    labels = [int(data[i][1]) for i in range(30)]
    assert sorted(labels) == [0] * 10 + [1] * 10 + [2] * 10  # every class in a prefix
    x, _ = data[0]
    assert x.shape == (1, 28, 28) and float(x.min()) >= 0 and float(x.max()) <= 1
    resized = load_dataset(folder_cfg(fashion_folder, image_size=16), fashion_folder, train=False)
    assert resized[0][0].shape == (1, 16, 16) and len(cast(Sized, resized)) == 300


def test_image_folder_trains_above_85_percent(fashion_folder: Path, tmp_path: Path,
                                              one_torch_thread: None,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    # 1,500 fresh files: keep them out of the user's on-disk digest cache (tests write no ~/.cache)
    monkeypatch.setenv("ROBUSTLAB_DIGEST_CACHE", "off")
    spec = TrainSpec.model_validate({
        "name": "fashion3", "kind": "train", "seed": 0,
        "dataset": {"name": "image_folder", "root": str(fashion_folder), "channels": 1},
        "model": {"arch": "linear"},
        "training": {"epochs": 3, "batch_size": 50,
                     "optimizer": {"name": "adam", "lr": 1e-2, "weight_decay": 0}},
        "evaluation": {"checks": False},
    })
    reporter = MemoryReporter()
    train_run(spec, RunContext(run_id="r", run_dir=tmp_path, device=CPU, reporter=reporter,
                               data_dir=tmp_path))
    (clean,) = [row for row in reporter.rows() if row["attack"] == "none"]
    assert clean["accuracy"] > 0.85, clean
    assert (clean["model"], clean["dataset"], clean["n"]) == ("linear", "image_folder", 300)
    facts = reporter.facts
    assert facts["data_root"] == str(fashion_folder)
    assert facts["data_hash"] == data_hash(spec.dataset, tmp_path)
    assert (facts["data_file_count"], facts["data_train_examples"],
            facts["data_evaluated_examples"]) == (1500, 1200, 300)


def test_image_folder_errors_name_what_is_wrong(tmp_path: Path) -> None:
    root = tmp_path / "data"
    with pytest.raises(MissingDataError, match="image_folder root not found"):
        dataset_info(folder_cfg(root), tmp_path)
    (root / "train" / "cat").mkdir(parents=True)
    Image.new("L", (8, 8)).save(root / "train" / "cat" / "a.png")
    with pytest.raises(MissingDataError, match=r"has no test/ \(or val/\) folder"):
        dataset_info(folder_cfg(root), tmp_path)
    (root / "val" / "dog").mkdir(parents=True)
    Image.new("L", (8, 8)).save(root / "val" / "dog" / "b.png")
    with pytest.raises(MalformedDataError, match="val/ has classes that train/ lacks: dog"):
        dataset_info(folder_cfg(root), tmp_path)
    (root / "train" / "dog").mkdir()
    with pytest.raises(MalformedDataError, match="train/dog has no images"):
        dataset_info(folder_cfg(root), tmp_path)
    Image.new("L", (8, 8)).save(root / "train" / "dog" / "c.png")
    info = dataset_info(folder_cfg(root), tmp_path)
    assert (info.num_classes, info.input_shape) == (2, (1, 8, 8))
    two = load_dataset(folder_cfg(root), tmp_path, train=True)
    assert sorted(int(two[i][1]) for i in range(2)) == [-1, 1]  # binary convention


def test_npz_loads_uint8_and_float_images(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    path = tmp_path / "own.npz"
    np.savez(path, x_train=rng.integers(0, 256, (20, 8, 8, 3), dtype=np.uint8),
             y_train=np.arange(20) % 4, x_test=rng.integers(0, 256, (6, 8, 8, 3), dtype=np.uint8),
             y_test=np.arange(6) % 4)
    cfg = DatasetConfig(name="npz", root=str(path), test_subset=4)
    info = dataset_info(cfg, tmp_path)
    assert (info.num_classes, info.input_shape) == (4, (3, 8, 8))
    data = load_dataset(cfg, tmp_path, train=False)
    x, y = data.tensors()  # type: ignore[attr-defined]
    assert x.shape == (4, 3, 8, 8) and y.tolist() == [0, 1, 2, 3] and float(x.max()) <= 1
    floats = tmp_path / "floats.npz"
    np.savez(floats, x_train=rng.random((10, 5, 5)), y_train=np.arange(10) % 2,
             x_test=rng.random((4, 5, 5)), y_test=np.array([0, 1, 1, 0]))
    test = load_dataset(DatasetConfig(name="npz", root=str(floats)), tmp_path, train=False)
    assert test[0][0].dtype == torch.float32 and [int(test[i][1]) for i in range(4)] == [-1, 1, 1, -1]


def test_npz_errors_name_what_is_wrong(tmp_path: Path) -> None:
    path = tmp_path / "bad.npz"
    with pytest.raises(MissingDataError, match="npz file not found"):
        dataset_info(DatasetConfig(name="npz", root=str(path)), tmp_path)
    np.savez(path, x_train=np.zeros((2, 4, 4), np.uint8), y_train=np.zeros(2, np.int64),
             x_test=np.zeros((2, 4, 4), np.uint8))
    with pytest.raises(MalformedDataError, match="lacks y_test"):
        dataset_info(DatasetConfig(name="npz", root=str(path)), tmp_path)
    path.write_bytes(b"not a zip")
    with pytest.raises(MalformedDataError, match="not a readable .npz file"):
        dataset_info(DatasetConfig(name="npz", root=str(path)), tmp_path)
