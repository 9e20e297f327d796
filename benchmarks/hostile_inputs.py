"""Hostile inputs through the ``robustlab`` command: what each does, its peak memory and time.

The claim measured: every hostile file of ``tests/data/hostile/make_corpus.py`` (and a planted
pickle in torch.hub's cache, and checkpoints that hold more than tensors) ends the command with
one line and a non-zero exit, no traceback, within a few seconds of a run that reads nothing,
and without growing past such a run's memory. With ``--before DIR`` the same cases also run on
another tree of robustlab (say the last commit, unpacked with ``git archive HEAD | tar -x -C
DIR``), for the "before" column.

Run by hand (not a test):
    .venv/bin/python benchmarks/hostile_inputs.py [--before /tmp/robustlab-before] [--timeout 60]

Each case is ``python -m service.cli ...`` in a fresh folder, measured by a wrapper process
(``getrusage(RUSAGE_CHILDREN).ru_maxrss`` of that one child, and its wall time), killed after
``--timeout`` seconds (a hang). ``ROBUSTLAB_MAX_DATASET_BYTES`` is 256 MiB, so that the zip bomb
meets the limit on any machine (the default is half of the memory available).
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from tests.data.hostile import make_corpus  # noqa: E402 - the corpus lives with the tests

MEASURE = textwrap.dedent("""
    import json, resource, subprocess, sys, time
    started = time.monotonic()
    try:
        done = subprocess.run(sys.argv[2:], capture_output=True, text=True,
                              timeout=float(sys.argv[1]))
        rc, err = done.returncode, done.stdout + done.stderr
    except subprocess.TimeoutExpired as exc:
        rc, err = "hang", "(killed after the timeout)"
    print(json.dumps({"rc": rc, "out": err, "seconds": time.monotonic() - started,
                      "peak_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))
""")


class Planted:
    """A pickle that would create ``marker`` when unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


def train_spec(path: Path, dataset: str, model: str = "{arch: linear}") -> Path:
    path.write_text(f"name: hostile\nkind: train\ndataset: {dataset}\nmodel: {model}\n"
                    "training: {epochs: 1}\n")
    return path


def evaluate_spec(path: Path, checkpoint: Path, data: Path) -> Path:
    path.write_text(f"name: hostile\nkind: evaluate\nsource: {{checkpoint: {checkpoint}, model: "
                    f"{{arch: linear}}}}\ndataset: {{name: npz, root: {data}}}\n")
    return path


def cases(corpus: dict[str, Path], folder: Path) -> dict[str, tuple[list[str], dict[str, str]]]:
    """Case -> (CLI arguments, extra environment)."""
    big = {"ROBUSTLAB_MAX_SPEC_BYTES": str(8 << 20)}
    found: dict[str, tuple[list[str], dict[str, str]]] = {}
    for name in ("nul.yaml", "esc.yaml", "deep_brackets.yaml", "deep_braces.yaml",
                 "deep_dashes.yaml", "deep_indent.yaml"):
        found[name] = (["validate", str(corpus[name])], big if name == "deep_indent.yaml" else {})
    for name in ("zip_bomb.npz", "label_1e9.npz", "xy_mismatch.npz", "object_array.npz"):
        spec = train_spec(folder / f"{name}.yaml", f"{{name: npz, root: {corpus[name]}}}")
        found[name] = (["run", str(spec)], {})
    for name in ("fifo_folder", "loop_folder", "truncated_folder", "bomb_folder"):
        spec = train_spec(folder / f"{name}.yaml", f"{{name: image_folder, root: {corpus[name]}}}")
        found[name] = (["run", str(spec)], {})
    small = folder / "small.npz"
    np.savez(small, **make_corpus.small_arrays())  # type: ignore[arg-type]
    found["valid small npz (reference)"] = (["run", str(train_spec(
        folder / "small.yaml", f"{{name: npz, root: {small}}}"))], {})
    with_args = folder / "with_args.pt"
    torch.save({"state_dict": {"weight": torch.zeros(1, 64)},
                "args": argparse.Namespace(lr=0.1)}, with_args)
    found["checkpoint holding argparse.Namespace"] = (["run", str(evaluate_spec(
        folder / "args.yaml", with_args, small))], {})
    evil = folder / "evil.pt"
    evil.write_bytes(pickle.dumps(Planted(folder / "canary-checkpoint"), protocol=4))
    found["checkpoint pickle calling os.system"] = (["run", str(evaluate_spec(
        folder / "evil.yaml", evil, small))], {})
    planted = folder / "torch" / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    planted.parent.mkdir(parents=True)
    planted.write_bytes(pickle.dumps(Planted(folder / "canary-hub"), protocol=2))
    rgb = folder / "rgb.npz"
    np.savez(rgb, **make_corpus.small_arrays(channels=3))  # type: ignore[arg-type]
    model = "{arch: 'torchvision:resnet18', kwargs: {weights: IMAGENET1K_V1, num_classes: 1000}}"
    found["planted pickle in $TORCH_HOME/hub/checkpoints"] = (["run", str(train_spec(
        folder / "hub.yaml", f"{{name: npz, root: {rgb}}}", model))], {})
    return found


def measure(tree: Path, args: list[str], env: dict[str, str], timeout: float) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as work:
        full = {**env, "PYTHONPATH": str(tree)}
        subprocess.run([sys.executable, "-m", "service.cli", "db", "upgrade"], cwd=work,
                       env=full, capture_output=True, check=True)
        done = subprocess.run([sys.executable, "-c", MEASURE, str(timeout), sys.executable, "-m",
                               "service.cli", *args], cwd=work, env=full, capture_output=True,
                              text=True, check=True)
    result: dict[str, object] = json.loads(done.stdout)
    return result


def summary(result: dict[str, object]) -> str:
    text = str(result["out"])
    lines = [line for line in text.splitlines() if line.strip()]
    traceback = "Traceback" in text
    failed = [line for line in lines if " failed" in line]
    shown = (failed or lines or [""])[-1 if traceback else 0]
    shown = shown.split(": ", 1)[1] if failed and not traceback else shown
    shown = shown if len(shown) <= 90 else shown[:87] + "..."
    return f"{'TRACEBACK ' if traceback else ''}{shown}".replace("|", "\\|")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, help="another robustlab tree to compare with")
    parser.add_argument("--timeout", type=float, default=60.0)
    options = parser.parse_args()
    trees = [("now", REPO)] + ([("before", options.before)] if options.before else [])
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        corpus = make_corpus.build(folder / "corpus")
        env = {k: v for k, v in os.environ.items() if not k.startswith("ROBUSTLAB_")}
        env |= {"ROBUSTLAB_MAX_DATASET_BYTES": str(256 << 20), "TORCH_HOME": str(folder / "torch")}
        print("| case | tree | exit | peak MiB | seconds | what it says |")
        print("|---|---|---|---|---|---|")
        for case, (args, extra) in cases(corpus, folder).items():
            for label, tree in trees:
                for canary in folder.glob("canary-*"):
                    canary.unlink()
                result = measure(tree, args, {**env, **extra}, options.timeout)
                ran = " CODE RAN" if any(folder.glob("canary-*")) else ""
                print(f"| {case} | {label} | {result['rc']} | {result['peak_mib']:.0f} | "
                      f"{result['seconds']:.1f} | {summary(result)}{ran} |", flush=True)


if __name__ == "__main__":
    main()
