"""What an experiment receives from outside: where to write, which device, whom to tell."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from contract.records import Reporter
from workers.science.distributed import SINGLE, World


@dataclass
class RunContext:
    """Everything an experiment needs from outside: where to write, which device, whom to tell."""

    run_id: str
    run_dir: Path
    """Scratch and checkpoint directory of this run; it survives a crash, so runs can resume."""
    device: torch.device
    reporter: Reporter
    data_dir: Path
    """Default root of datasets (``ROBUSTLAB_DATA_DIR``)."""
    resolve_run_checkpoint: Callable[[str], Path] | None = None
    """Maps a run id to its final checkpoint file (provided by the store)."""
    find_runs: Callable[[str], list[dict[str, Any]]] | None = None
    """Maps an experiment name to its runs (id, status, spec) — for specs that reuse models."""
    world: World = SINGLE
    """This process's rank of a distributed run; every rank runs the experiment, and only
    rank 0's ``reporter`` records anything."""
