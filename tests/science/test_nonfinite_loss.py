"""A training whose loss becomes NaN stops at once, saying the epoch and step and what to try."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from contract.errors import Refusal
from contract.specs.training import AdversaryConfig, OptimizerConfig, TrainingConfig
from workers.science.training import train
from workers.science.training.totals import NonFiniteLoss


def test_a_diverging_training_fails_naming_the_epoch_and_the_step(tmp_path: Path) -> None:
    torch.manual_seed(0)
    data = TensorDataset(torch.rand(64, 1, 4, 4), torch.randint(0, 3, (64,)))
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    cfg = TrainingConfig(epochs=2, batch_size=8,
                         optimizer=OptimizerConfig(name="sgd", lr=1e38, momentum=0.0,
                                                   weight_decay=0.0))
    with pytest.raises(NonFiniteLoss) as raised:
        train(model, data, cfg, AdversaryConfig(), device=torch.device("cpu"),
              checkpoint_dir=tmp_path, seed=0)
    message = str(raised.value)
    assert message.startswith("loss became NaN at epoch 1, step ")
    step = int(message.split("step ")[1].split(";")[0])
    assert 2 <= step <= 8  # the first step is still finite: the huge update comes after it
    assert "smaller learning rate" in message and "\n" not in message
    assert isinstance(raised.value, Refusal)  # a run records it as its one-line error
    assert not list(tmp_path.glob("*.pt"))  # no checkpoint of a diverged epoch
