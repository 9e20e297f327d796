"""Training's public names, where the rest of robustlab imports them from.

The implementation lives in the ``workers.science.training`` package: one loop, one module per
method (``pgd``: Madry et al. 2018; ``trades``: Zhang et al. 2019; ``fgsm_rs``: Wong et al.
2020), mixed precision, the loader and fgsm_rs' catastrophic-overfitting check. See
``workers.science.training.loop`` for the exact-resume contract.
"""

from workers.science.training import (
    METHODS,
    CatastrophicOverfitting,
    EpochMetrics,
    TrainHooks,
    TrainOutcome,
    build_optimizer,
    build_scheduler,
    epoch_eps,
    epoch_step_size,
    seed_everything,
    train,
)

__all__ = [
    "METHODS",
    "CatastrophicOverfitting",
    "EpochMetrics",
    "TrainHooks",
    "TrainOutcome",
    "build_optimizer",
    "build_scheduler",
    "epoch_eps",
    "epoch_step_size",
    "seed_everything",
    "train",
]
