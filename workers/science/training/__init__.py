"""Training: standard, PGD (Madry et al.), TRADES (Zhang et al.) and fast FGSM-RS (Wong et al.).

One loop (``loop.train``) and one module per method (``pgd``, ``trades``, ``fgsm_rs``), named in
``contract.catalog`` and loaded by ``methods.training_method``; ``common`` holds what the methods share, ``precision`` mixed precision and
memory format, ``loader`` the DataLoader and device copies, ``overfit`` fgsm_rs' catastrophic-
overfitting check. The rest of robustlab imports the public names from here.
"""

from workers.science.training.common import BatchLoss, BatchSetup, epoch_eps, epoch_step_size
from workers.science.training.loop import TrainHooks, TrainOutcome, train
from workers.science.training.methods import training_method
from workers.science.training.optim import build_optimizer, build_scheduler, seed_everything
from workers.science.training.overfit import CatastrophicOverfitting
from workers.science.training.totals import EpochMetrics

__all__ = [
    "BatchLoss",
    "BatchSetup",
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
    "training_method",
]
