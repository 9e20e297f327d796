"""Figure 1 on real images, small: standard accuracy falls as eps_train grows (Fashion-MNIST).

A sweep spec over ``adversary.eps`` (4,000 real Fashion-MNIST training images from Debian's
``dataset-fashion-mnist``, 2 epochs of PGD-3 training, 2,000 test images), each cell run by the
train kind. The linear model keeps it to seconds; the paper's CNN shows the same order at
larger scale (docs/reproduction.md). Asserts the order, not the numbers.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from contract.records import MemoryReporter
from contract.specs.loading import load_spec_text
from contract.specs.sweep import expand
from workers.science import data_fetch
from workers.science.context import RunContext
from workers.science.experiments.train import run as run_train_kind

SPEC = """
name: fig1_fashion_small
kind: train
dataset: {name: fashion_mnist, train_subset: 4000, test_subset: 2000}
model: {arch: linear}
training:
  epochs: 2
  batch_size: 64
  optimizer: {name: adam, lr: 1e-3, weight_decay: 0}
adversary: {norm: linf, steps: 3}
evaluation: {checks: false}
sweep:
  adversary.eps: [0, 0.1, 0.25]
"""


@pytest.fixture(scope="module")
def fashion_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    assert data_fetch.DEBIAN_FASHION_MNIST_DIR.is_dir(), (
        f"{data_fetch.DEBIAN_FASHION_MNIST_DIR} absent: apt-get install dataset-fashion-mnist")
    root = tmp_path_factory.mktemp("data")
    data_fetch.fetch("fashion_mnist", root)
    return root


def test_standard_accuracy_falls_as_eps_train_grows_on_real_fashion_mnist(
    fashion_dir: Path, tmp_path: Path,
) -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        standard: dict[float, float] = {}
        for cell in expand(load_spec_text(SPEC).spec):
            reporter = MemoryReporter()
            run_train_kind(cell.spec, RunContext(
                run_id=f"cell{cell.index}", run_dir=tmp_path / str(cell.index),
                device=torch.device("cpu"), reporter=reporter, data_dir=fashion_dir))
            (clean,) = [row for row in reporter.rows() if row["attack"] == "none"]
            assert clean["n"] == 2000 and clean["train_method"] == "pgd"
            standard[cell.params["adversary.eps"]] = clean["accuracy"]
    finally:
        torch.set_num_threads(threads)
    assert standard[0] > standard[0.1] > standard[0.25], standard
    assert standard[0] > 0.65  # the standard model learnt the task (10 classes)
