"""torchvision's pretrained weights (``model.kwargs.weights``), checked on every load.

``torchvision.models.get_model(name, weights=...)`` reads the weights through
``torch.hub.load_state_dict_from_url``, which checks the file's hash only when it downloads it
and then unpickles the cached file with ``weights_only=False``: a file planted in
``$TORCH_HOME/hub/checkpoints`` would run its code in every run that names those weights.
robustlab builds the network without weights instead and loads them itself:

1. the weights' file is torch.hub's: ``torch.hub.get_dir()/checkpoints/<file name of the URL>``
   (downloaded there first, hash checked, when it is missing and the machine is online);
2. its SHA-256 must start with the prefix torchvision publishes in the file name
   (``resnet18-f37072fd.pth``), as torch.hub's ``check_hash`` does on download, but on every
   load, cached or not; a mismatch is one line naming the file;
3. it is read with ``torch.load(weights_only=True)`` (``weights_only.load_weights_only``) from
   the descriptor that was hashed, and loaded with ``load_state_dict`` (strict).

The network is built as torchvision's builder builds it for those weights: ``num_classes`` is
the weights' number of categories (another value is one line), and the few builders that change
more for pretrained weights (GoogLeNet and Inception v3: ``transform_input``, auxiliary heads;
ViT and MaxViT: the input size) get the same arguments here.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
import torchvision
from torch import nn

from contract.errors import Refusal
from workers.science.weights_only import load_weights_only

HASH_IN_NAME = re.compile(r"-([a-f0-9]*)\.")
"""torch.hub's ``HASH_REGEX``: the hash prefix in a weights file's name."""
CHUNK = 1 << 20
_AUX_HEADS = {"googlenet": (False, ("aux1", "aux2")), "inception_v3": (True, ("AuxLogits",))}
"""Builders that train auxiliary heads: (their default ``aux_logits``, the heads' attributes)."""


class PretrainedWeightsError(ValueError, Refusal):
    """Pretrained weights that cannot be used; the message is one line naming the file."""


def expected_prefix(file_name: str) -> str | None:
    """The hash prefix torchvision publishes in ``file_name`` (None when it has none)."""
    found = HASH_IN_NAME.search(file_name)
    return found.group(1) if found and found.group(1) else None


def weights_file(url: str) -> Path:
    """Where torch.hub keeps the file of ``url``: ``$TORCH_HOME/hub/checkpoints/<name>``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(url).path)


def _download(url: str, path: Path, prefix: str) -> None:
    """torch.hub's download (it checks the hash too), as one line when it fails."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        torch.hub.download_url_to_file(url, str(path), hash_prefix=prefix, progress=False)
    except Exception as exc:  # noqa: BLE001 - URLError, OSError, RuntimeError (hash) ...
        lines = str(exc).strip().splitlines()
        raise PretrainedWeightsError(
            f"{path} is missing and cannot be downloaded from {url} "
            f"({lines[0] if lines else type(exc).__name__}): put the file there") from None


def verified_state_dict(url: str) -> Any:
    """The weights of ``url``: the cached file, its SHA-256 checked, read with weights_only."""
    path = weights_file(url)
    prefix = expected_prefix(path.name)
    if prefix is None:
        raise PretrainedWeightsError(f"{path}: its name carries no hash to check the file "
                                     "against, so it is not loaded")
    if not path.exists():
        _download(url, path, prefix)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))
    except OSError as exc:
        raise PretrainedWeightsError(f"{path} cannot be read ({exc.strerror})") from None
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise PretrainedWeightsError(f"{path} is not a regular file: refused without "
                                         "reading it")
        digest = hashlib.sha256()
        for chunk in iter(lambda: handle.read(CHUNK), b""):
            digest.update(chunk)
        if not digest.hexdigest().startswith(prefix):
            raise PretrainedWeightsError(
                f"{path} has sha256 {digest.hexdigest()[:16]}..., not the {prefix}... that "
                "torchvision publishes in its name: refused, not loaded (delete the file to "
                "download it again)")
        handle.seek(0)
        return load_weights_only(path, "cpu", opened=handle)


def build(name: str, weights: Any, kwargs: dict[str, Any]) -> nn.Module:
    """``torchvision.models.get_model(name, weights=weights, **kwargs)``, loaded as described
    in the module docstring."""
    try:
        enum = torchvision.models.get_model_weights(name)
    except (KeyError, ValueError) as exc:
        raise PretrainedWeightsError(f"torchvision:{name} has no pretrained weights "
                                     f"({exc})") from None
    try:
        chosen = enum.verify(weights)
    except (KeyError, TypeError):
        raise PretrainedWeightsError(f"torchvision:{name} has no weights {weights!r}: one of "
                                     f"{', '.join(enum.__members__)}") from None
    kwargs = dict(kwargs)
    categories = chosen.meta.get("categories")
    if categories is not None:
        if kwargs.get("num_classes", len(categories)) != len(categories):
            raise PretrainedWeightsError(
                f"torchvision:{name} with weights {chosen.name} has {len(categories)} outputs, "
                f"not {kwargs['num_classes']}: set model.kwargs.num_classes: {len(categories)} "
                "or leave the weights out")
        kwargs["num_classes"] = len(categories)
    aux = _AUX_HEADS.get(name)
    keep_aux = kwargs.get("aux_logits", aux[0]) if aux else True
    if aux:
        kwargs.setdefault("transform_input", True)
        kwargs.update(aux_logits=True, init_weights=False)
    if name.startswith("vit_"):
        kwargs["image_size"] = chosen.meta["min_size"][0]
    if name == "maxvit_t":
        kwargs["input_size"] = chosen.meta["min_size"]
    model = torchvision.models.get_model(name, weights=None, **kwargs)
    state = verified_state_dict(chosen.url)
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as exc:
        lines = str(exc).strip().splitlines()
        raise PretrainedWeightsError(
            f"{weights_file(chosen.url)} does not fit torchvision:{name} "
            f"({lines[0] if lines else type(exc).__name__})") from None
    if aux and not keep_aux:
        model.aux_logits = False
        for head in aux[1]:
            setattr(model, head, None)
    return model
