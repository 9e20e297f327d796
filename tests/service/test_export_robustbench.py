"""``robustlab export robustbench`` end to end: real runs, the real command, RobustBench's class.

A tiny lab (4 classes of 32x32 colour blobs in an npz file) trains four one-epoch models in one
sweep (a WRN-10-1 on [0, 1] pixels, a swish DM-WRN-10-1 with its own normalisation, a WRN
behind the dataset's normalisation, a linear model) and evaluates them with a cut-down
AutoAttack; two ``evaluate`` runs re-evaluate the first: on a subset, and without AutoAttack.
The exported ``.pt`` must load with ``strict=True`` into RobustBench's own class (loaded from
its file, ``tests.robustbench_code``) and score exactly the ``clean_acc`` the JSON states; every
refusal is one line, exit 2, and writes nothing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from contract.specs.loading import load_spec_file
from service.recording import record
from service.settings import Settings
from service.store import migrate
from service.store.repository import Store
from tests.robustbench_code import robustbench_architecture

pytestmark = pytest.mark.slow  # six small runs, then ten exports: ~60 s on 2 cores

ROBUSTLAB = shutil.which("robustlab", path=str(Path(sys.executable).parent)) or "robustlab"
MODEL_INFO_KEYS = ["link", "name", "authors", "additional_data", "number_forward_passes",
                   "dataset", "venue", "architecture", "eps", "clean_acc", "reported",
                   "autoattack_acc"]
"""RobustBench's model_info keys, in their order (footnote and external follow when they apply)."""
TINY_AUTOATTACK = "{kind: autoattack, norm: linf, eps: 8/255, steps: 3, queries: 10, n_target_classes: 3}"
MODELS = {
    "wrn": "{arch: wide_resnet, kwargs: {depth: 10, widen_factor: 1, normalization: none}}",
    "dm": "{arch: dm_wide_resnet, kwargs: {depth: 10, width: 1, activation: swish, "
          "mean: [0.5, 0.5, 0.5], std: [0.25, 0.25, 0.25]}}",
    "behind": "{arch: wide_resnet, kwargs: {depth: 10, widen_factor: 1}}",
    "linear": "{arch: linear}",
}
TRAIN = f"""name: rb_train
kind: train
seed: 0
dataset: {{name: npz, root: blobs.npz, normalization: {{mean: [0.4, 0.4, 0.4], std: [0.3, 0.3, 0.3]}}}}
model: {MODELS["wrn"]}
training: {{epochs: 1, batch_size: 32, optimizer: {{name: sgd, lr: 0.05}}}}
evaluation:
  checks: false
  attacks:
    - {TINY_AUTOATTACK}
    - {{kind: pgd, norm: linf, eps: 8/255, steps: 5}}
sweep:
  model: [{", ".join(MODELS.values())}]
"""
SELECTED = f"""name: rb_selected
kind: train
seed: 0
dataset: {{name: npz, root: blobs.npz, validation: 8}}
model: {MODELS["wrn"]}
training: {{epochs: 3, batch_size: 8, optimizer: {{name: sgd, lr: 0.05}}, ema: 0.5,
           select: best_clean}}
evaluation:
  checks: false
  checkpoints: [final, best]
  attacks:
    - {TINY_AUTOATTACK}
"""
"""Selection on a validation split, with EMA: export takes the best checkpoint's rows and
weights."""
EVALUATE = f"""name: rb_evaluate
kind: evaluate
seed: 0
source: {{run: RUN}}
evaluation: {{checks: false}}
sweep:
  evaluation: [{{checks: false, subset: 4, attacks: [{TINY_AUTOATTACK}]}}, {{checks: false}}]
"""


def blobs(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Four classes of 32x32 colour images, each brighter in its own quadrant."""
    y = np.arange(n) % 4
    x = rng.random((n, 3, 32, 32)).astype(np.float32) * 0.5
    for label, (row, col) in enumerate([(0, 0), (0, 16), (16, 0), (16, 16)]):
        x[y == label, :, row:row + 16, col:col + 16] += 0.4
    return np.clip(x, 0, 1), y


def robustlab(*args: str, lab: Lab, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROBUSTLAB_")}
    env |= {"ROBUSTLAB_DATABASE_URL": lab.settings.database_url,
            "ROBUSTLAB_ARTIFACT_DIR": str(lab.settings.artifact_dir),
            "ROBUSTLAB_RUNS_DIR": str(lab.settings.runs_dir), "OMP_NUM_THREADS": "2"}
    result = subprocess.run([ROBUSTLAB, *args], cwd=lab.root, env=env, capture_output=True,
                            text=True, timeout=300)
    if check and result.returncode != 0:
        raise AssertionError(f"robustlab {' '.join(args)} exited {result.returncode}:\n"
                             f"{result.stdout}\n{result.stderr}")
    return result


@dataclass
class Lab:
    """The lab's folder, its store and its runs by name."""

    root: Path
    settings: Settings
    store: Store
    runs: dict[str, str] = field(default_factory=dict)

    def run(self, spec: str) -> None:
        """Record and execute a spec in-process, as ``robustlab run`` does (no torch import
        twice); the command under test, ``export robustbench``, runs as a real subprocess."""
        from service.runner import execute_run  # torch

        path = self.root / "spec.yaml"
        path.write_text(spec)
        for recorded in record(load_spec_file(path), self.store).runs:
            done = execute_run(recorded.id, self.store, settings=self.settings)
            assert done.status == "succeeded", done.error
            self.runs[self.name(done.resolved_spec)] = done.id

    @staticmethod
    def name(spec: dict[str, Any]) -> str:
        if spec["name"] in ("rb_selected", "rb_evaluate_selected"):
            return spec["name"].removeprefix("rb_")
        if spec["kind"] == "evaluate":
            return "subset" if spec["evaluation"]["subset"] else "no-autoattack"
        arch, kwargs = spec["model"]["arch"], spec["model"]["kwargs"]
        return {"dm_wide_resnet": "dm", "linear": "linear"}.get(arch) or (
            "wrn" if kwargs.get("normalization") == "none" else "behind")

    def test_split(self) -> tuple[torch.Tensor, torch.Tensor]:
        arrays = np.load(self.root / "blobs.npz")
        return torch.from_numpy(arrays["x_test"]), torch.from_numpy(arrays["y_test"])

    def export(self, run: str, out: Path, *args: str, check: bool = True
               ) -> subprocess.CompletedProcess[str]:
        return robustlab("export", "robustbench", self.runs[run], "--out", str(out), *args,
                         lab=self, check=check)

    def rows(self, run: str) -> list[dict[str, Any]]:
        return self.store.results(run_ids=[self.runs[run]])


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    root = tmp_path_factory.mktemp("rb_lab")
    rng = np.random.default_rng(0)
    (x_train, y_train), (x_test, y_test) = blobs(rng, 32), blobs(rng, 8)
    np.savez(root / "blobs.npz", x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    settings = Settings(database_url=f"sqlite:///{root / 'results.db'}",
                        artifact_dir=root / "artifacts", runs_dir=root / "runs",
                        data_dir=root / "data")
    migrate.upgrade(settings.database_url)
    lab = Lab(root, settings, Store.from_settings(settings))
    lab.run(TRAIN.replace("blobs.npz", str(root / "blobs.npz")))
    lab.run(EVALUATE.replace("RUN", lab.runs["wrn"]))
    lab.run(SELECTED.replace("blobs.npz", str(root / "blobs.npz")))
    lab.run("name: rb_evaluate_selected\nkind: evaluate\nseed: 0\n"
            f"source: {{run: {lab.runs['selected']}}}\nevaluation: {{checks: false}}\n")
    yield lab
    lab.store.close()


def clean_accuracy(net: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> str:
    with torch.no_grad():
        return f"{100 * (net.eval()(x).argmax(1) == y).float().mean().item():.2f}"


def their_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    payload = torch.load(path, weights_only=True)
    assert list(payload) == ["state_dict"], "RobustBench's file shape"
    return dict(payload["state_dict"])


def test_a_wide_resnet_export_loads_into_robustbench_and_scores_its_clean_acc(
        lab: Lab, tmp_path: Path) -> None:
    done = lab.export("wrn", tmp_path, "--name", "Tiny2026Blobs", "--allow-reduced",
                      "--title", "Tiny blobs", "--authors", "A. Author, B. Author",
                      "--link", "https://example.org/tiny", "--venue", "robustlab 2026",
                      "--reported", "1.50")
    info = json.loads((tmp_path / "Tiny2026Blobs.json").read_text())
    assert list(info)[:len(MODEL_INFO_KEYS)] == MODEL_INFO_KEYS
    assert set(info) - set(MODEL_INFO_KEYS) <= {"footnote", "external"}
    assert {key: info[key] for key in ("link", "name", "authors", "additional_data",
                                       "number_forward_passes", "dataset", "venue",
                                       "architecture", "eps", "reported")} == {
        "link": "https://example.org/tiny", "name": "Tiny blobs",
        "authors": "A. Author, B. Author", "additional_data": False,
        "number_forward_passes": 1, "dataset": "npz", "venue": "robustlab 2026",
        "architecture": "WideResNet-10-1", "eps": "8/255", "reported": "1.50"}
    assert "3 APGD/FAB steps, 10 Square queries" in info["footnote"]

    rows = lab.rows("wrn")
    (autoattack,) = [r for r in rows if r["attack"] == "autoattack" and r["variant"] == ""]
    (worst,) = [r for r in rows if r["attack"] == "worst_case"]
    assert info["autoattack_acc"] == f"{100 * autoattack['accuracy']:.2f}"
    if worst["accuracy"] < autoattack["accuracy"]:
        assert info["external"] == f"{100 * worst['accuracy']:.2f}"
    else:
        assert "external" not in info

    theirs = robustbench_architecture("wide_resnet").WideResNet(depth=10, num_classes=4,
                                                                widen_factor=1)
    theirs.load_state_dict(their_checkpoint(tmp_path / "Tiny2026Blobs.pt"), strict=True)
    assert clean_accuracy(theirs, *lab.test_split()) == info["clean_acc"]
    assert "wide_resnet.WideResNet(depth=10, num_classes=4, widen_factor=1" in done.stdout


def test_a_run_that_selected_its_best_epoch_exports_the_best_checkpoint(
        lab: Lab, tmp_path: Path) -> None:
    lab.export("selected", tmp_path, "--name", "Tiny2026Best", "--allow-reduced")
    info = json.loads((tmp_path / "Tiny2026Best.json").read_text())
    rows = lab.rows("selected")
    assert {r["checkpoint"] for r in rows} == {"final", "best"}
    (best_clean,) = [r for r in rows if r["checkpoint"] == "best" and r["attack"] == "none"]
    (best_aa,) = [r for r in rows if r["checkpoint"] == "best" and r["attack"] == "autoattack"
                  and r["variant"] == ""]
    assert info["clean_acc"] == f"{100 * best_clean['accuracy']:.2f}"
    assert info["autoattack_acc"] == f"{100 * best_aa['accuracy']:.2f}"
    best = next(c for c in lab.store.list_checkpoints(run_id=lab.runs["selected"])
                if c.metadata.get("best"))
    payload = torch.load(best.path, weights_only=True)
    theirs = robustbench_architecture("wide_resnet").WideResNet(depth=10, num_classes=4,
                                                                widen_factor=1)
    theirs.load_state_dict(their_checkpoint(tmp_path / "Tiny2026Best.pt"), strict=True)
    averaged = payload["ema"] or payload["model"]
    exported = their_checkpoint(tmp_path / "Tiny2026Best.pt")
    assert any(torch.equal(exported[key], value) for key, value in averaged.items()
               if key in exported), "the export holds the best checkpoint's averaged weights"
    assert all(torch.equal(exported[key], averaged[key]) for key in exported
               if key in averaged)
    assert clean_accuracy(theirs, *lab.test_split()) == info["clean_acc"]


def test_an_evaluate_run_of_a_selecting_run_reads_its_best_checkpoint(lab: Lab) -> None:
    best = next(c for c in lab.store.list_checkpoints(run_id=lab.runs["selected"])
                if c.metadata.get("best"))
    evaluated = lab.store.get_run(lab.runs["evaluate_selected"])
    assert evaluated.provenance["checkpoint"] == best.path
    (clean,) = [r for r in lab.rows("evaluate_selected") if r["attack"] == "none"]
    (best_clean,) = [r for r in lab.rows("selected")
                     if r["checkpoint"] == "best" and r["attack"] == "none"]
    assert clean["accuracy"] == best_clean["accuracy"]


def test_a_dm_wide_resnet_export_keeps_its_own_normalisation(lab: Lab, tmp_path: Path) -> None:
    lab.export("dm", tmp_path, "--name", "TinyDM", "--allow-reduced")
    info = json.loads((tmp_path / "TinyDM.json").read_text())
    assert (info["architecture"], info["name"]) == ("WideResNet-10-1", "TinyDM")
    dm = robustbench_architecture("dm_wide_resnet")
    theirs = dm.DMWideResNet(num_classes=4, depth=10, width=1, activation_fn=dm.Swish,
                             mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    theirs.load_state_dict(their_checkpoint(tmp_path / "TinyDM.pt"), strict=True)
    assert clean_accuracy(theirs, *lab.test_split()) == info["clean_acc"]


def test_a_subset_is_exported_only_when_allowed_and_then_says_n(lab: Lab, tmp_path: Path) -> None:
    lab.export("subset", tmp_path, "--name", "TinySubset", "--allow-subset", "--allow-reduced")
    info = json.loads((tmp_path / "TinySubset.json").read_text())
    assert "first 4 test examples" in info["footnote"]
    theirs = robustbench_architecture("wide_resnet").WideResNet(depth=10, num_classes=4,
                                                                widen_factor=1)
    theirs.load_state_dict(their_checkpoint(tmp_path / "TinySubset.pt"), strict=True)
    x, y = lab.test_split()
    assert clean_accuracy(theirs, x[:4], y[:4]) == info["clean_acc"]


@pytest.mark.parametrize(("run", "args", "words"), [
    ("wrn", [], "--allow-reduced"),
    ("subset", ["--allow-reduced"], "--allow-subset"),
    ("no-autoattack", [], "has no standard AutoAttack row on the test split"),
    ("wrn", ["--eps", "0.1", "--allow-reduced"], "no standard AutoAttack row at 0.1: it has linf 8/255"),
    ("behind", ["--allow-reduced"], "use `normalization: none` in model.kwargs, or `dm_wide_resnet`"),
    ("linear", ["--allow-reduced"], "arch 'linear' has no RobustBench layout"),
    ("wrn", ["--name", "../escape"], "is not a model id"),
], ids=["reduced", "subset", "no-autoattack", "eps", "normalisation", "no-layout", "name"])
def test_refusals_are_one_line_and_write_nothing(lab: Lab, tmp_path: Path, run: str,
                                                 args: list[str], words: str) -> None:
    out = tmp_path / "out"
    name = [] if "--name" in args else ["--name", "Refused"]
    result = lab.export(run, out, *name, *args, check=False)
    assert result.returncode == 2, result.stdout + result.stderr
    assert words in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert not out.exists() or not any(out.iterdir())
