"""The registry of training methods: ``adversary.method`` name -> the function of one batch.

``service.specs.catalog.TRAINING_METHODS`` lists the same names with their titles (a test
checks). Adding a method: one module in this package with a ``TrainingMethod`` function, one
entry here and one in the catalog.
"""

from __future__ import annotations

from workers.science.training.common import TrainingMethod
from workers.science.training.fgsm_rs import fgsm_rs_training
from workers.science.training.pgd import pgd_training
from workers.science.training.trades import trades_training

METHODS: dict[str, TrainingMethod] = {
    "pgd": pgd_training,
    "trades": trades_training,
    "fgsm_rs": fgsm_rs_training,
}
