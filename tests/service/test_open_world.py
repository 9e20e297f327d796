"""A lab's own models, data and checkpoints through the real ``robustlab`` command.

The plugin is a distribution made inside the test: a module and its ``*.dist-info`` (with
``entry_points.txt``) on ``PYTHONPATH``, exactly what ``pip install`` leaves behind, and no
edit of robustlab.
"""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from contract.specs.kinds import EvaluateSpec
from service import scheduler
from service.store import migrate
from service.store.repository import Store
from service.store.scheduling import Schedules
from tests.service.test_cli import robustlab

PLUGIN = '''
"""A lab's own model and dataset, registered through entry points."""
import torch
from torch import nn
from torch.utils.data import Dataset


def build_tiny_net(num_classes, input_shape, hidden=16):
    channels, height, width = input_shape
    return nn.Sequential(nn.Flatten(), nn.Linear(channels * height * width, hidden), nn.ReLU(),
                         nn.Linear(hidden, num_classes))


class Quadrants(Dataset):
    """Four classes of 1x8x8 images, each brighter in its own quadrant."""

    classes = ["top-left", "top-right", "bottom-left", "bottom-right"]

    def __init__(self, n, seed):
        generator = torch.Generator().manual_seed(seed)
        self.y = torch.arange(n) % 4
        self.x = torch.rand(n, 1, 8, 8, generator=generator) * 0.5
        for label, (row, col) in enumerate([(0, 0), (0, 4), (4, 0), (4, 4)]):
            self.x[self.y == label, :, row:row + 4, col:col + 4] += 0.5

    def __len__(self):
        return len(self.y)

    def __getitem__(self, index):
        return self.x[index], self.y[index]


def load_quadrants(root, *, train, n=400):
    return Quadrants(n if train else n // 4, seed=0 if train else 1)
'''
ENTRY_POINTS = """\
[robustlab.models]
tiny_net = open_world_plugin:build_tiny_net

[robustlab.datasets]
quadrants = open_world_plugin:load_quadrants
"""


def installed_lab(tmp_path: Path, distribution: str, modules: dict[str, str],
                  entry_points: str) -> tuple[Path, dict[str, str]]:
    """A migrated working directory and an environment in which ``distribution`` is installed
    as pip would leave it: its ``modules`` and a ``*.dist-info`` with ``entry_points``."""
    site = tmp_path / "site"
    info = site / f"{distribution}-0.1.dist-info"
    info.mkdir(parents=True)
    for name, source in modules.items():
        (site / f"{name}.py").write_text(source)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {distribution}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(entry_points)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROBUSTLAB_")}
    env["PYTHONPATH"] = os.pathsep.join([str(site), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    work = tmp_path / "work"
    work.mkdir()
    robustlab("db", "upgrade", cwd=work, env=env, check=True)
    return work, env


@pytest.fixture
def lab(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A migrated working directory and an environment in which the plugin is installed."""
    return installed_lab(tmp_path, "open_world_plugin", {"open_world_plugin": PLUGIN},
                         ENTRY_POINTS)


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


def test_a_plugin_model_and_dataset_train_and_evaluate_through_the_cli(
        lab: tuple[Path, dict[str, str]]) -> None:
    work, env = lab
    train = write(work / "train.yaml", """\
        name: plugin_train
        kind: train
        dataset: {name: quadrants, kwargs: {n: 400}}
        model: {arch: tiny_net, kwargs: {hidden: 32}}
        training: {epochs: 3, batch_size: 32, optimizer: {name: adam, lr: 0.01, weight_decay: 0}}
        evaluation:
          checks: false
          attacks: [{kind: pgd, norm: linf, eps: 0.05, steps: 3}]
        """)
    robustlab("run", str(train), cwd=work, env=env, check=True)
    (checkpoint,) = [p for p in work.rglob("epoch-0003.pt") if "checkpoints" in p.parts]
    evaluate = write(work / "evaluate.yaml", f"""\
        name: plugin_eval
        kind: evaluate
        source: {{checkpoint: {checkpoint}}}
        evaluation: {{checks: false}}
        """)
    robustlab("run", str(evaluate), cwd=work, env=env, check=True)
    rows = json.loads(robustlab("results", "--format", "json", cwd=work, env=env,
                                check=True).stdout)
    clean = {row["experiment"]: row for row in rows if row["attack"] == "none"}
    assert set(clean) == {"plugin_train", "plugin_eval"}
    for row in clean.values():
        assert (row["model"], row["dataset"], row["n"]) == ("tiny_net", "quadrants", 100)
        assert row["accuracy"] > 0.9
    assert clean["plugin_eval"]["accuracy"] == clean["plugin_train"]["accuracy"]


def test_bad_inputs_are_one_line(lab: tuple[Path, dict[str, str]]) -> None:
    work, env = lab
    unknown = write(work / "unknown.yaml", """\
        name: bad_arch
        kind: train
        dataset: {name: mnist}
        model: {arch: tiny_nett}
        """)
    timm = write(work / "timm.yaml", """\
        name: bad_timm
        kind: train
        dataset: {name: cifar10}
        model: {arch: "timm:resnet18"}
        """)
    checked = robustlab("validate", str(unknown), str(timm), cwd=work, env=env)
    lines = checked.stderr.strip().splitlines()
    assert checked.returncode == 2 and len(lines) == 2, checked.stderr
    assert lines[0].startswith(f"{unknown}:4 model.arch: unknown arch 'tiny_nett'; known: linear")
    assert "tiny_net" in lines[0] and "robustlab.models" in lines[0]
    assert lines[1].startswith(f"{timm}:4 model.arch: 'timm:resnet18' needs timm")
    assert "pip install 'robustlab[timm]'" in lines[1]

    (work / "folder" / "train" / "a").mkdir(parents=True)
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(work / "folder" / "train" / "a" / "x.png")
    np.savez(work / "partial.npz", x_train=np.zeros((4, 8, 8), np.uint8),
             y_train=np.zeros(4, np.int64), x_test=np.zeros((2, 8, 8), np.uint8))
    data = write(work / "data.yaml", f"""\
        name: bad_data
        kind: train
        dataset: {{name: image_folder, root: {work / "folder"}}}
        model: {{arch: linear}}
        training: {{epochs: 1}}
        sweep:
          dataset: [{{name: image_folder, root: {work / "folder"}}}, {{name: npz, root: {work / "partial.npz"}}}]
        """)
    failed = robustlab("run", str(data), cwd=work, env=env)
    assert failed.returncode == 1
    reasons = [line for line in failed.stderr.splitlines() if " failed" in line]
    assert len(reasons) == 2, failed.stderr
    assert reasons[0].endswith(f"{work / 'folder'} has no test/ (or val/) folder (image_folder "
                               "wants root/train/<class>/* and root/test/<class>/* (or val/))")
    assert reasons[1].endswith(f"{work / 'partial.npz'} lacks y_test (an npz dataset needs "
                               "x_train, y_train, x_test, y_test; it has x_train, y_train, x_test)")

    weights = work / "weights.pt"
    torch.save({"model_state_dict": {"conv.weight": torch.zeros(2, 1, 3, 3)}}, weights)
    misfit = write(work / "misfit.yaml", f"""\
        name: bad_weights
        kind: evaluate
        source: {{checkpoint: {weights}, model: {{arch: tiny_net}}}}
        dataset: {{name: quadrants}}
        """)
    failed = robustlab("run", str(misfit), cwd=work, env=env)
    reasons = [line for line in failed.stderr.splitlines() if " failed" in line]
    assert failed.returncode == 1 and len(reasons) == 1, failed.stderr
    assert reasons[0].endswith(f"the weights in {weights} do not fit arch 'tiny_net': missing "
                               "keys: 1.bias, 1.weight, 3.bias, 3.weight; unexpected keys: "
                               "conv.weight")


def test_a_watched_folder_keeps_the_specs_source_model(tmp_path: Path, sqlite_url: str) -> None:
    migrate.upgrade(sqlite_url)
    store = Store(sqlite_url)
    watched = tmp_path / "incoming"
    watched.mkdir()
    spec = write(tmp_path / "standing.yaml", """\
        name: standing_foreign
        kind: evaluate
        source: {checkpoint: placeholder.pt, model: {arch: linear}}
        dataset: {name: binary_mnist, test_subset: 100}
        """)
    _, created = scheduler.add(store, spec, watch=watched)
    assert created
    (schedule,) = Schedules(store).all()
    dropped = watched / "theirs.pth"
    torch.save({"weight": torch.zeros(1, 784), "bias": torch.zeros(1)}, dropped)
    assert scheduler.candidates(Schedules(store), schedule, settle_s=0) == [
        str(dropped.resolve())]
    loaded = scheduler.spec_for(schedule, str(dropped)).spec
    assert isinstance(loaded, EvaluateSpec)
    assert loaded.source.checkpoint == str(dropped)
    assert loaded.source.model is not None and loaded.source.model.arch == "linear"
    assert yaml.safe_load(schedule.source_yaml)["source"]["model"] == {"arch": "linear"}
    store.close()
