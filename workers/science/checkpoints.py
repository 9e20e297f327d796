"""Checkpoint files: write them atomically, read them safely, rebuild a model from one.

A checkpoint holds everything an interrupted training needs to continue exactly where an
uninterrupted one would be: model, optimizer and scheduler state, the epoch count, and every
random number generator the training draws from (torch CPU, CUDA if in use, numpy, python
``random`` and the data loader's shuffling generator). Its ``meta`` dict says what the model is
(arch, dataset, num_classes, train_norm, train_eps, seed, the resolved spec), so that
``load_model`` can rebuild it without the spec that trained it.

Files are read with ``torch.load(weights_only=True)``: only tensors and plain containers are
unpickled, never arbitrary objects, so opening a checkpoint from elsewhere runs no code.
"""

from __future__ import annotations

import os
import random
import re
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch import nn

from contract.datasets import DatasetInfo, Normalization
from workers.science.models import build_model
from workers.science.reads import guarded
from workers.science.weights_only import load_weights_only

FORMAT = "robustlab-checkpoint"
VERSION = 1
_NAME = re.compile(r"^epoch-(\d+)\.pt$")
_SAFE_GLOBALS: list[Any] = [Counter]
"""``MultiStepLR`` keeps its milestones in a ``Counter``; nothing else outside plain types."""


def checkpoint_path(directory: Path, epoch: int) -> Path:
    """Where the checkpoint written after ``epoch`` completed epochs lives."""
    return directory / f"epoch-{epoch:04d}.pt"


def latest_checkpoint(directory: Path) -> Path | None:
    """The checkpoint with the most completed epochs in ``directory``, or None if there is none.

    Temporary files of an interrupted write never match the name pattern, so a crash during
    ``save_checkpoint`` cannot make a half-written file the latest.
    """
    if not directory.is_dir():
        return None
    found = [(int(m.group(1)), p) for p in directory.iterdir() if (m := _NAME.match(p.name))]
    return max(found)[1] if found else None


def capture_rng(loader_generator: torch.Generator | None = None) -> dict[str, Any]:
    """The state of every generator a training run draws from, as plain picklable values.

    CUDA states are captured only when CUDA is initialised: a CPU run in a process that never
    touched the GPU neither needs them nor should initialise CUDA to read them.
    """
    numpy_state = cast(tuple[str, np.ndarray, int, int, float], np.random.get_state(legacy=True))
    name, keys, pos, has_gauss, cached_gaussian = numpy_state
    return {
        "python": random.getstate(),
        "numpy": (name, keys.tolist(), pos, has_gauss, cached_gaussian),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [],
        "loader": None if loader_generator is None else loader_generator.get_state(),
    }


def restore_rng(state: dict[str, Any], loader_generator: torch.Generator | None = None) -> None:
    """Put every generator back where ``capture_rng`` found it.

    Generator states must be CPU byte tensors, also when the checkpoint was loaded with a
    CUDA ``map_location``, hence the ``.cpu()`` calls.
    """
    random.setstate(state["python"])
    name, keys, pos, has_gauss, cached_gaussian = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached_gaussian))
    torch.set_rng_state(state["torch"].cpu())
    if state["cuda"] and torch.cuda.is_available():
        for index, cuda_state in enumerate(state["cuda"][: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(cuda_state.cpu(), index)
    if loader_generator is not None and state["loader"] is not None:
        loader_generator.set_state(state["loader"].cpu())


def save_checkpoint(
    path: Path,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None,
    epoch: int,
    rng: dict[str, Any],
    meta: dict[str, Any],
    history: list[dict[str, Any]] | None = None,
    scaler: dict[str, Any] | None = None,
    ema: dict[str, Any] | None = None,
) -> Path:
    """Write a checkpoint atomically: a temporary file in the same directory, then a rename.

    A reader (or a resumed run) therefore sees either the previous file or the complete new
    one, never a torn write. ``meta`` must hold plain values (str, int, float, bool, None,
    lists, dicts); ``epoch`` is added to it. ``history`` is the per-epoch metrics so far;
    ``scaler`` the fp16 gradient scaler's state (``training.amp: fp16``), None otherwise;
    ``ema`` the weight average's state (``training.ema``), None otherwise.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "epoch": epoch,
        "meta": {**meta, "epoch": epoch},
        "model": model.state_dict(),
        "optimizer": None if optimizer is None else optimizer.state_dict(),
        "scheduler": None if scheduler is None else scheduler.state_dict(),
        "rng": rng,
        "history": history or [],
        "scaler": scaler,
        "ema": ema,
    }
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(payload, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: Path, map_location: torch.device | str = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by ``save_checkpoint``.

    Raises:
        FileNotFoundError: no file at ``path`` (one line naming it).
        ValueError: the file is not a readable robustlab checkpoint (truncated, corrupt, or
            something else entirely).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    payload = guarded(lambda: load_weights_only(path, map_location, safe_globals=_SAFE_GLOBALS),
                      f"checkpoint {path}")  # a hung mount must not hang the run
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"{path} is not a robustlab checkpoint (no '{FORMAT}' header)")
    if payload.get("version") != VERSION:
        raise ValueError(f"{path} has checkpoint format version {payload.get('version')}, "
                         f"this code reads version {VERSION}")
    return payload


def model_data_facts(meta: dict[str, Any]) -> str | DatasetInfo:
    """What ``build_model`` needs about the data a checkpoint's model was built for.

    Checkpoints since the catalog record the input shape and normalisation themselves (a
    folder or plugin dataset has no catalog entry to look them up in); older ones name a
    built-in dataset.
    """
    if "input_shape" not in meta:
        return str(meta["dataset"])
    stats = meta.get("normalization")
    return DatasetInfo(
        name=str(meta["dataset"]), title=str(meta["dataset"]), num_classes=int(meta["num_classes"]),
        input_shape=tuple(int(v) for v in meta["input_shape"]),  # type: ignore[arg-type]
        class_names=(), default_arch=str(meta["arch"]), augment=False, root_name="", files=(),
        fetchable=False,
        normalization=None if stats is None else Normalization(tuple(stats[0]), tuple(stats[1])),
    )


def load_model(path: Path, device: torch.device) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model stored in a checkpoint, on ``device`` and in eval mode, with its meta.

    The meta dict has at least arch, dataset, num_classes, train_norm, train_eps and epoch;
    newer checkpoints also input_shape, normalization ([mean, std] or None) and model_kwargs.
    A checkpoint of a training with ``training.ema`` gives the averaged weights: they are what
    the run evaluates, selects on and exports.
    """
    payload = load_checkpoint(path, map_location=device)
    meta = payload["meta"]
    missing = {"arch", "dataset", "num_classes", "train_norm", "train_eps"} - meta.keys()
    if missing:
        raise ValueError(f"{path} lacks model metadata: {', '.join(sorted(missing))}")
    model = build_model(meta["arch"], meta["num_classes"], dataset=model_data_facts(meta),
                        kwargs=meta.get("model_kwargs"))
    weights = payload.get("ema") or payload["model"]
    model.load_state_dict(weights)
    return model.to(device).eval(), meta
