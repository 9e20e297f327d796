"""Hostile files through the ``robustlab`` command: one line each, a non-zero exit, no traceback.

Every case runs the real command in a temporary folder on the corpus of
``tests/data/hostile/make_corpus.py``. Each test asserts the exit code, one line naming the
file, no traceback, and a failed run's stored error starting with that same line. The memory
and time of each child are measured by a small wrapper process (its
``getrusage(RUSAGE_CHILDREN).ru_maxrss`` sees that one child only); the zip bomb's child must
stay within a little of a run that reads nothing at all.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import shutil
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.data.hostile import make_corpus

ROBUSTLAB = shutil.which("robustlab", path=str(Path(sys.executable).parent)) or "robustlab"
MEASURE = textwrap.dedent("""
    import json, resource, subprocess, sys, time
    started = time.monotonic()
    try:
        done = subprocess.run(sys.argv[2:], capture_output=True, text=True,
                              timeout=float(sys.argv[1]))
        rc, out, err = done.returncode, done.stdout, done.stderr
    except subprocess.TimeoutExpired as exc:
        rc, out, err = "timeout", str(exc.stdout or ""), str(exc.stderr or "")
    print(json.dumps({"rc": rc, "stdout": out, "stderr": err,
                      "seconds": time.monotonic() - started,
                      "peak_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))
""")
DEADLINE_S = 180
"""A run refused for a FIFO or a link loop must end by then (it used to hang for ever)."""


@dataclass(frozen=True)
class Measured:
    rc: int | str
    stdout: str
    stderr: str
    seconds: float
    peak_mib: float

    def lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.strip()]


def measured(*args: str, cwd: Path, env: dict[str, str], timeout: float = DEADLINE_S) -> Measured:
    """``robustlab ARGS`` with its peak memory and its time, measured around that one child."""
    wrapper = subprocess.run([sys.executable, "-c", MEASURE, str(timeout), ROBUSTLAB, *args],
                             cwd=cwd, env=env, capture_output=True, text=True,
                             timeout=timeout + 60, check=True)
    return Measured(**json.loads(wrapper.stdout))


def report(case: str, result: Measured) -> None:
    """What the issue's table needs, in the test log (``pytest -s`` shows it)."""
    print(f"\n[hostile] {case}: exit {result.rc}, peak {result.peak_mib:.0f} MiB, "
          f"{result.seconds:.1f} s")


def assert_clean(result: Measured) -> None:
    text = result.stdout + result.stderr
    assert "Traceback" not in text and 'File "' not in text, text
    assert not any(ord(c) < 32 and c not in "\n\t" for c in text), "a control character echoed"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_corpus.build(tmp_path_factory.mktemp("hostile_corpus"))


@pytest.fixture
def lab(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A migrated working folder and an environment with the tests' own data limit."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROBUSTLAB_")}
    env["ROBUSTLAB_MAX_DATASET_BYTES"] = str(256 << 20)
    env["TORCH_HOME"] = str(tmp_path / "torch")
    subprocess.run([ROBUSTLAB, "db", "upgrade"], cwd=tmp_path, env=env, check=True,
                   capture_output=True)
    return tmp_path, env


def failed_runs(work: Path, env: dict[str, str]) -> dict[str, dict[str, Any]]:
    listed = subprocess.run([ROBUSTLAB, "runs", "--format", "json", "--limit", "0"], cwd=work,
                            env=env, capture_output=True, text=True, check=True)
    return {run["id"]: run for run in json.loads(listed.stdout)}


FAILED_LINE = re.compile(r"^(\w+) failed(?: .*?)?: ([A-Z][A-Za-z]+: .*)$")
"""``ID failed: REASON``, or ``ID failed CELL PARAMETERS: REASON`` for a sweep's cell."""


def reasons(result: Measured) -> list[tuple[str, str]]:
    """(run id, reason) of every failed run's line."""
    return [(found.group(1), found.group(2)) for line in result.lines()
            if (found := FAILED_LINE.match(line))]


def spec(path: Path, datasets: list[str], model: str = "{arch: linear}") -> Path:
    sweep = "" if len(datasets) == 1 else "sweep:\n  dataset: [" + ", ".join(datasets) + "]\n"
    path.write_text(f"name: hostile\nkind: train\ndataset: {datasets[0]}\nmodel: {model}\n"
                    f"training: {{epochs: 1}}\n{sweep}")
    return path


# --------------------------------------------------------------------------- specs


def test_hostile_specs_are_one_line_each_with_exit_2(corpus: dict[str, Path],
                                                     lab: tuple[Path, dict[str, str]]) -> None:
    work, env = lab
    names = ["nul.yaml", "esc.yaml", "deep_brackets.yaml", "deep_braces.yaml", "deep_dashes.yaml",
             "deep_indent.yaml"]
    result = measured("validate", *(str(corpus[name]) for name in names), cwd=work,
                      env={**env, "ROBUSTLAB_MAX_SPEC_BYTES": str(8 << 20)})
    report("specs (validate, six files)", result)
    assert result.rc == 2
    assert_clean(result)
    lines = result.lines()
    assert len(lines) == len(names), result.stderr
    expected = {"nul.yaml": ":1: control character U+0000 (NUL) in column 14",
                "esc.yaml": ":3: control character U+001B (ESC) in column 14",
                "deep_brackets.yaml": ":3: YAML nested deeper than 64 levels",
                "deep_braces.yaml": ":3: YAML nested deeper than 64 levels",
                "deep_dashes.yaml": ":4: YAML nested deeper than 64 levels",
                "deep_indent.yaml": ":67: YAML nested deeper than 64 levels"}
    for name, says in expected.items():
        assert any(line.startswith(f"{corpus[name]}{says}") for line in lines), (name, lines)
    run = measured("run", str(corpus["deep_brackets.yaml"]), cwd=work, env=env)
    assert run.rc == 2 and run.lines() == [f"{corpus['deep_brackets.yaml']}:3: YAML nested deeper "
                                           "than 64 levels (ROBUSTLAB_MAX_YAML_DEPTH)"]
    assert failed_runs(work, env) == {}


# --------------------------------------------------------------------------- data


def test_hostile_data_fails_each_run_in_one_line_within_the_deadline(
        corpus: dict[str, Path], lab: tuple[Path, dict[str, str]]) -> None:
    work, env = lab
    cases = {"label_1e9.npz": ("npz", "y_train has label 1000000000"),
             "xy_mismatch.npz": ("npz", "y_train holds 7 labels but x_train holds 10 images"),
             "object_array.npz": ("npz", "x_train is object"),
             "fifo_folder": ("image_folder", "train/a/z.png is a FIFO (named pipe)"),
             "loop_folder": ("image_folder", "train/a/loop is a symbolic link loop"),
             "truncated_folder": ("image_folder", "train/a/t.png is not a readable image"),
             "bomb_folder": ("image_folder", "train/a/big.png is refused as a decompression bomb")}
    datasets = [f"{{name: {kind}, root: {corpus[name]}}}" for name, (kind, _) in cases.items()]
    result = measured("run", str(spec(work / "data.yaml", datasets)), cwd=work, env=env)
    report("seven hostile datasets (one run command, seven runs)", result)
    assert result.rc == 1 and result.seconds < DEADLINE_S
    assert_clean(result)
    found = reasons(result)
    assert len(found) == len(cases), result.stderr
    stored = failed_runs(work, env)
    for (run_id, reason), (name, (_, says)) in zip(found, cases.items(), strict=True):
        file_named = str(corpus[name])
        assert reason.startswith("RefusedData: ") and file_named in reason, reason
        assert says in reason, (says, reason)
        run = stored[run_id]
        assert run["status"] == "failed" and run["error"].splitlines()[0] == reason


def test_the_zip_bomb_is_refused_within_a_memory_cap(corpus: dict[str, Path],
                                                     lab: tuple[Path, dict[str, str]]) -> None:
    """The bomb declares 1.1 GB; its run must grow no more than a run that reads nothing."""
    work, env = lab
    baseline = measured("run", str(spec(work / "small.yaml", [
        f"{{name: npz, root: {corpus['xy_mismatch.npz']}}}"])), cwd=work, env=env)
    bomb = measured("run", str(spec(work / "bomb.yaml", [
        f"{{name: npz, root: {corpus['zip_bomb.npz']}}}"])), cwd=work, env=env)
    report("baseline: a run refused at once (xy_mismatch.npz)", baseline)
    report("zip_bomb.npz (1 MB declaring 1.1 GB)", bomb)
    assert baseline.rc == bomb.rc == 1
    assert_clean(bomb)
    ((_, reason),) = reasons(bomb)
    assert reason.startswith(f"RefusedData: {corpus['zip_bomb.npz']}: its arrays declare "
                             "1108803680 bytes (1.0 GiB)")
    assert bomb.peak_mib < baseline.peak_mib + 100, (bomb.peak_mib, baseline.peak_mib)


def test_a_malicious_pickle_planted_in_torch_hub_runs_nothing(
        corpus: dict[str, Path], lab: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    """torchvision would unpickle a cached ``resnet18-f37072fd.pth`` with weights_only=False."""
    work, env = lab
    canary = tmp_path / "canary"

    class Planted:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (os.system, (f"touch {canary}",))

    planted = Path(env["TORCH_HOME"]) / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    planted.parent.mkdir(parents=True)
    planted.write_bytes(pickle.dumps(Planted(), protocol=2))
    rgb = work / "rgb.npz"
    np.savez(rgb, **make_corpus.small_arrays(channels=3))  # type: ignore[arg-type]
    model = "{arch: 'torchvision:resnet18', kwargs: {weights: IMAGENET1K_V1, num_classes: 1000}}"
    result = measured("run", str(spec(work / "pretrained.yaml", [f"{{name: npz, root: {rgb}}}"],
                                      model=model)), cwd=work, env=env)
    report("planted pickle in $TORCH_HOME/hub/checkpoints", result)
    assert result.rc == 1
    assert_clean(result)
    ((run_id, reason),) = reasons(result)
    assert reason.startswith(f"ModelBuildError: {planted} has sha256 "), reason
    assert "not the f37072fd... that torchvision publishes in its name" in reason
    assert failed_runs(work, env)[run_id]["error"].splitlines()[0] == reason
    assert not canary.exists()
