"""Fixtures for the science tests (real MNIST, ``mnist_data_dir``, lives in ``tests/conftest.py``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from tests.science.attack_cases import MnistCase, train_small_cnn


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    """Tiny tensors: intra-op threads only add contention on a shared, busy CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def robust_small_cnn(mnist_data_dir: Path) -> MnistCase:
    """A small CNN PGD-trained at l_inf 0.3 on 600 real digits (~10 s, once per session), with
    200 test digits: the model the attack comparisons (APGD, Square, AutoAttack) run on."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return train_small_cnn(mnist_data_dir, eps=0.3, epochs=6)
    finally:
        torch.set_num_threads(threads)
