"""Weights written elsewhere: find the state_dict in a file and fit it to a robustlab model.

A lab's checkpoints come in a few shapes, all read with ``torch.load(weights_only=True)`` (only
tensors and plain containers are unpickled, never code):

- a bare ``state_dict`` (``torch.save(net.state_dict(), path)``);
- a dict holding one under a common key: ``state_dict``, ``model_state_dict``, ``model``, ``net``;
- MadryLab's robustness library: ``{"model": ..., "optimizer": ..., "epoch": ...}`` whose model
  keys are ``module.model.*`` (the network), ``module.normalizer.new_mean/new_std`` (its input
  normalisation) and ``module.attacker.*`` (the same network again, for the attacker);
- robustlab's own format (``workers.science.checkpoints``), which needs no architecture;
- a ``.safetensors`` file (Hugging Face's format: a JSON header and raw tensor bytes), read with
  the ``safetensors`` library and no pickle at all; a file so named that is not one is refused.

Prefixes added by wrappers (``module.`` of DataParallel, ``model.``, ``_orig_mod.`` of
``torch.compile``) are stripped when every key has them. The state is loaded into the network
behind robustlab's normalisation, or into the whole model when the file holds that. Keys that
do not fit are one line listing the first missing and unexpected ones.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file as load_safetensors
from torch import nn

from contract.datasets import DatasetInfo
from contract.errors import Refusal
from contract.specs.architecture import ModelConfig
from workers.science.checkpoints import FORMAT, load_model
from workers.science.models import NormalizedModel, build_model, inner_network
from workers.science.reads import guarded
from workers.science.weights_only import load_weights_only

COMMON_KEYS = ("state_dict", "model_state_dict", "model", "net")
"""Where training scripts usually put the weights inside a checkpoint dict."""
PREFIXES = ("module.", "model.", "_orig_mod.")
ROBUSTNESS_NORMALIZER = ("normalizer.new_mean", "normalizer.new_std")
SAFETENSORS_SUFFIX = ".safetensors"
PICKLE_MAGIC = {b"PK\x03\x04": "a torch.save zip archive", b"\x80": "a pickle"}
"""How a pickle-bearing file starts: torch.save's zip (pickle inside) or a bare pickle."""
SHOWN_KEYS = 5
"""Keys named in a mismatch message; the rest are counted."""

StateDict = dict[str, torch.Tensor]


class WeightsMismatch(ValueError, Refusal):
    """Weights that do not fit the architecture; the message is one line naming the keys."""


def read_weights_file(path: Path, map_location: torch.device | str = "cpu") -> Any:
    """``torch.load(path, weights_only=True)`` with one-line errors (``weights_only.load_weights_only``).

    A file that needs more than tensors and containers (say an ``argparse.Namespace`` saved
    beside the weights) is refused, saying which global it wanted and how to re-save it.
    """
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    if path.suffix == SAFETENSORS_SUFFIX:
        return guarded(lambda: read_safetensors(path, map_location), f"checkpoint {path}")
    return guarded(lambda: load_weights_only(path, map_location), f"checkpoint {path}")


def read_safetensors(path: Path, map_location: torch.device | str = "cpu") -> StateDict:
    """The tensors of a ``.safetensors`` file; nothing in it is unpickled, whatever it holds.

    A file that is not one (say a ``torch.save`` checkpoint renamed) is one line saying so.
    """
    try:
        return load_safetensors(path, device=str(map_location))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        with path.open("rb") as file:
            head = file.read(4)
        kind = next((what for magic, what in PICKLE_MAGIC.items() if head.startswith(magic)), None)
        if kind is not None:
            raise ValueError(f"{path} is not a readable safetensors file: it is {kind}, which "
                             "robustlab does not unpickle under that name; name it .pt to read "
                             "it with torch.load(weights_only=True), or convert it with "
                             "safetensors.torch.save_file") from None
        text = str(exc).strip()
        first = text.splitlines()[0] if text else ""
        raise ValueError(f"{path} is not a readable safetensors file "
                         f"({type(exc).__name__}: {first})") from None


def _is_state_dict(value: Any) -> bool:
    return (isinstance(value, Mapping) and bool(value)
            and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in value.items()))


def find_state_dict(payload: Any, path: Path) -> tuple[StateDict, str]:
    """The state_dict inside ``payload`` and where it was (``"bare"`` or the key)."""
    if _is_state_dict(payload):
        return dict(payload), "bare"
    if isinstance(payload, Mapping):
        for key in COMMON_KEYS:
            if _is_state_dict(payload.get(key)):
                return dict(payload[key]), key
        keys = ", ".join(str(k) for k in list(payload)[:8])
        raise ValueError(f"{path} holds no state_dict: a dict with keys {keys}; expected tensors, "
                         f"or a state_dict under one of {', '.join(COMMON_KEYS)}")
    raise ValueError(f"{path} holds a {type(payload).__name__}, not a state_dict")


def _strip(state: StateDict, prefix: str) -> StateDict:
    return {key[len(prefix):]: value for key, value in state.items()}


def robustness_layout(state: StateDict) -> tuple[StateDict, tuple[torch.Tensor, torch.Tensor]] | None:
    """(network state, (mean, std)) when ``state`` is in MadryLab robustness's layout, else None.

    Their ``AttackerModel`` saves ``normalizer`` (``InputNormalize``: ``new_mean``, ``new_std``
    of shape (C, 1, 1)), ``model`` (the network) and ``attacker`` (both again), all under
    DataParallel's ``module.``.
    """
    if all(key.startswith("module.") for key in state):
        state = _strip(state, "module.")
    if not all(key in state for key in ROBUSTNESS_NORMALIZER):
        return None
    net = {key[len("model."):]: value for key, value in state.items() if key.startswith("model.")}
    if not net:
        return None
    mean, std = (state[key] for key in ROBUSTNESS_NORMALIZER)
    return net, (mean, std)


def prefix_candidates(state: StateDict) -> Iterator[StateDict]:
    """``state``, then with one common wrapper prefix stripped, then another, ..."""
    yield state
    current = state
    while True:
        shared = [p for p in PREFIXES if all(key.startswith(p) for key in current)]
        if not shared:
            return
        current = _strip(current, shared[0])
        yield current


def _listed(keys: set[str]) -> str:
    ordered = sorted(keys)
    shown = ", ".join(ordered[:SHOWN_KEYS])
    return f"{shown} (+{len(ordered) - SHOWN_KEYS} more)" if len(ordered) > SHOWN_KEYS else shown


def fit_state_dict(model: nn.Module, state: StateDict, *, arch: str, path: Path) -> None:
    """Load ``state`` into ``model`` (or its network behind the normalisation), strictly.

    Tries every prefix candidate against the whole model and against its inner network and
    loads the first whose keys match exactly; otherwise one line with the closest candidate's
    missing and unexpected keys, or the first shape that differs.
    """
    targets = [model] if inner_network(model) is model else [inner_network(model), model]
    best: tuple[int, set[str], set[str]] | None = None
    for candidate in prefix_candidates(state):
        for target in targets:
            expected = set(target.state_dict())
            given = set(candidate)
            if given == expected:
                _load_shapes_checked(target, candidate, arch=arch, path=path)
                return
            score = len(given & expected)
            if best is None or score > best[0]:
                best = (score, expected - given, given - expected)
    assert best is not None
    _, missing, unexpected = best
    parts = [f"missing keys: {_listed(missing)}" if missing else "",
             f"unexpected keys: {_listed(unexpected)}" if unexpected else ""]
    raise WeightsMismatch(f"the weights in {path} do not fit arch {arch!r}: "
                          + "; ".join(part for part in parts if part))


def _load_shapes_checked(target: nn.Module, state: StateDict, *, arch: str, path: Path) -> None:
    own = target.state_dict()
    for key, value in state.items():
        if tuple(value.shape) != tuple(own[key].shape):
            raise WeightsMismatch(
                f"the weights in {path} do not fit arch {arch!r}: {key} is {tuple(value.shape)} "
                f"in the file but {tuple(own[key].shape)} in the model (check model.kwargs and "
                "the dataset's number of classes)")
    target.load_state_dict(state)


def _set_normalization(model: nn.Module, mean: torch.Tensor, std: torch.Tensor, path: Path) -> None:
    """Use the checkpoint's own normalisation (what its network was trained behind)."""
    if not isinstance(model, NormalizedModel):
        raise WeightsMismatch(f"{path} normalises its inputs (robustness layout) but the dataset "
                              "has no normalisation: set dataset.normalization")
    normalize = model.normalize
    if mean.numel() != normalize.mean.numel():
        raise WeightsMismatch(f"{path} normalises {mean.numel()} channels, the data has "
                              f"{normalize.mean.numel()}")
    normalize.mean.copy_(mean.reshape(normalize.mean.shape))
    normalize.std.copy_(std.reshape(normalize.std.shape))


def load_foreign(path: Path, model_cfg: ModelConfig, info: DatasetInfo,
                 device: torch.device) -> tuple[nn.Module, dict[str, Any]]:
    """A model of ``model_cfg`` for ``info``'s data, holding the weights found in ``path``."""
    payload = read_weights_file(path)
    state, where = find_state_dict(payload, path)
    model = build_model(model_cfg.arch, info.num_classes, dataset=info, kwargs=model_cfg.kwargs)
    layout = robustness_layout(state)
    if layout is not None:
        net_state, (mean, std) = layout
        fit_state_dict(inner_network(model), net_state, arch=model_cfg.arch, path=path)
        _set_normalization(model, mean, std, path)
        where = f"{where} (robustness library layout)"
    else:
        fit_state_dict(model, state, arch=model_cfg.arch, path=path)
    meta: dict[str, Any] = {
        "arch": model_cfg.arch, "model_kwargs": dict(model_cfg.kwargs), "dataset": info.name,
        "num_classes": info.num_classes, "train_norm": None, "train_eps": None, "train_method": None,
        "epoch": None,
        "format": "foreign", "state_dict_at": where,
    }
    return model.to(device).eval(), meta


def is_robustlab_checkpoint(payload: Any) -> bool:
    """Whether a loaded file is robustlab's own format (header ``format``)."""
    return isinstance(payload, Mapping) and payload.get("format") == FORMAT


def load_source_model(path: Path, device: torch.device, *, model_cfg: ModelConfig | None,
                      info_for: Any) -> tuple[nn.Module, dict[str, Any]]:
    """The model a ``source: {checkpoint, model}`` names, on ``device`` in eval mode, with meta.

    robustlab's own checkpoints are rebuilt from their header (``checkpoints.load_model``);
    ``model_cfg``, when given, must then agree with the header's arch. Anything else is a
    foreign file and needs ``model_cfg``; ``info_for()`` gives the ``DatasetInfo`` of the data
    it is evaluated on (called only then, since it may read a folder).
    """
    payload = read_weights_file(path)
    if is_robustlab_checkpoint(payload):
        model, meta = load_model(path, device)
        if model_cfg is not None and model_cfg.arch != meta["arch"]:
            raise WeightsMismatch(f"{path} is a robustlab checkpoint of {meta['arch']!r}, not "
                                  f"{model_cfg.arch!r}: leave source.model out")
        return model, {**meta, "format": "robustlab"}
    if model_cfg is None:
        raise ValueError(f"{path} is not a robustlab checkpoint: say what it holds with "
                         "source.model: {arch: ..., kwargs: {...}} and name the dataset")
    return load_foreign(path, model_cfg, info_for(), device)
