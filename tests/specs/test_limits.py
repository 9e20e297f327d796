"""Spec limits (issue 13, probes (d)): what the catalogue cannot hold as a YAML file.

Files that are too big or not regular files, limits taken from the settings, overrides that
carry a YAML bomb, a sweep refused before expansion, 64-bit seeds in both stores, and JSON
output without NaN or Infinity. The catalogue (``tests/specs/invalid/``) has the rest.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from contract.limits import get_limits
from contract.specs.loading import SpecError, load_spec_file, load_spec_text
from contract.specs.values import MAX_INT64
from service import jsonout
from service.results import to_json
from service.settings import get_settings
from service.store import migrate
from service.store.entities import NewRun
from service.store.repository import Store

ROBUSTLAB = shutil.which("robustlab", path=str(Path(sys.executable).parent)) or "robustlab"
THEORY = "name: limits\nkind: theory\n"


@pytest.fixture
def limits(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """Set ROBUSTLAB_MAX_* in the environment; the settings are re-read before and after."""
    get_settings.cache_clear()
    get_limits.cache_clear()
    yield monkeypatch
    monkeypatch.undo()
    get_settings.cache_clear()
    get_limits.cache_clear()


def one_problem(load: Any, *args: Any) -> str:
    with pytest.raises(SpecError) as raised:
        load(*args)
    text = str(raised.value)
    assert "\n" not in text and "Traceback" not in text
    return text


def strict_loads(text: str) -> Any:
    """``json.loads`` that refuses NaN/Infinity tokens, as every other JSON parser does."""
    def refuse(token: str) -> None:
        raise ValueError(f"not JSON: {token}")
    return json.loads(text, parse_constant=refuse)


# --------------------------------------------------------------------------- files


def test_a_file_over_the_size_limit_is_refused_unread(tmp_path: Path) -> None:
    spec = tmp_path / "big.yaml"
    spec.write_text(THEORY + "description: " + "x" * (1 << 20) + "\n")
    text = one_problem(load_spec_file, spec)
    assert text.startswith(f"{spec}: is {spec.stat().st_size} bytes, more than the limit of "
                           "1048576 bytes") and "ROBUSTLAB_MAX_SPEC_BYTES" in text


def test_text_over_the_size_limit_is_refused(limits: pytest.MonkeyPatch) -> None:
    limits.setenv("ROBUSTLAB_MAX_SPEC_BYTES", "100")
    get_settings.cache_clear()
    get_limits.cache_clear()
    assert "ROBUSTLAB_MAX_SPEC_BYTES" in one_problem(load_spec_text, THEORY + "#" * 100, "up.yaml")
    load_spec_text(THEORY, "up.yaml")


def robustlab(*args: str, cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROBUSTLAB_")}
    return subprocess.run([ROBUSTLAB, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_validate_refuses_dev_zero_and_a_fifo_at_once(tmp_path: Path) -> None:
    fifo = tmp_path / "spec.yaml"
    os.mkfifo(fifo)
    started = time.monotonic()
    result = robustlab("validate", "/dev/zero", str(fifo), cwd=tmp_path, timeout=30)
    assert time.monotonic() - started < 30
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines == [
        "/dev/zero: is a character device, not a spec file: refused without reading it",
        f"{fifo}: is a FIFO (named pipe), not a spec file: refused without reading it",
    ], result.stderr


# --------------------------------------------------------------------------- settings


def test_size_limits_come_from_the_settings(limits: pytest.MonkeyPatch) -> None:
    limits.setenv("ROBUSTLAB_MAX_EXAMPLES", "50000")
    get_settings.cache_clear()
    get_limits.cache_clear()
    load_spec_text(THEORY + "n_train: 50000\n")
    assert one_problem(load_spec_text, THEORY + "n_train: 50001\n").endswith(
        "n_train: must be <= 50000 (the limit ROBUSTLAB_MAX_EXAMPLES; got 50001)")


def test_the_sweep_cap_comes_from_the_settings(limits: pytest.MonkeyPatch) -> None:
    limits.setenv("ROBUSTLAB_MAX_SWEEP_CELLS", "6")
    get_settings.cache_clear()
    get_limits.cache_clear()
    load_spec_text(THEORY + "sweep: {svm_c: [1, 2, 3], epochs: [1, 2]}\n")
    assert "the sweep has 9 cells (3 x 3), more than 6" in one_problem(
        load_spec_text, THEORY + "sweep: {svm_c: [1, 2, 3], epochs: [1, 2, 3]}\n")


def test_a_huge_sweep_is_refused_before_any_expansion() -> None:
    """10**18 cells: expanding even a millionth of them would take hours and all memory."""
    values = "[" + ", ".join(str(i) for i in range(1, 1001)) + "]"
    keys = ("epochs", "n_train", "n_test", "svm_c", "seed", "distribution.d")
    spec = THEORY + "sweep:\n" + "".join(f"  {key}: {values}\n" for key in keys)
    started = time.monotonic()
    text = one_problem(load_spec_text, spec)
    assert time.monotonic() - started < 10
    assert f"the sweep has {1000 ** 6} cells" in text and "ROBUSTLAB_MAX_SWEEP_CELLS" in text


@pytest.mark.parametrize("value, says", [
    ("[" + "[" * 100 + "]" * 100 + "]", "YAML nested deeper than 64 levels"),
    ("[" + ", ".join(["0.1"] * 10_001) + "]", "a list of more than 10000 items"),
    ("&a [0.1, *a]", "a cycle"),
])
def test_an_override_is_held_to_the_same_limits(value: str, says: str) -> None:
    text = one_problem(load_spec_text, THEORY, "s.yaml", [f"eps={value}"])
    assert text.startswith(f"--set eps={value[:10]}") and says in text


# --------------------------------------------------------------------------- seeds


def test_seeds_cover_0_to_2_63_minus_1() -> None:
    assert load_spec_text(THEORY + f"seed: {MAX_INT64}\n").spec.seed == 2**63 - 1
    assert "must be >= 0" in one_problem(load_spec_text, THEORY + "seed: -1\n")
    assert "must be <= 9223372036854775807" in one_problem(load_spec_text,
                                                           THEORY + f"seed: {2**63}\n")


def _run(seed: int, params: dict[str, Any] | None = None) -> NewRun:
    return NewRun(id=f"r{seed % 10**9:09d}"[:12], experiment="limits", kind="theory", cell=0,
                  params=params or {}, resolved_spec={"name": "limits", "kind": "theory"},
                  spec_hash=f"{seed:x}"[:16], seed=seed)


@pytest.mark.parametrize("seed", [0, 2**31, MAX_INT64])
def test_the_largest_seed_round_trips_through_the_store(database_url: str, tmp_path: Path,
                                                         seed: int) -> None:
    """SQLite INTEGER is 64-bit; PostgreSQL's seed column is BIGINT since migration 0003."""
    migrate.upgrade(database_url)
    store = Store(database_url)
    try:
        store.add_spec("s1", "limits", "theory", None, THEORY, {"name": "limits"})
        (run,) = store.add_runs("s1", [_run(seed)])
        assert store.get_run(run.id).seed == seed
    finally:
        store.close()


# --------------------------------------------------------------------------- JSON


def test_json_output_has_no_nan_or_infinity() -> None:
    rows = [{"run_id": "a", "accuracy": math.nan, "eval_eps": math.inf, "n": 3},
            {"run_id": "b", "accuracy": 0.5, "eval_eps": -math.inf}]
    parsed = strict_loads(to_json(rows))
    assert [(r["accuracy"], r["eval_eps"], r["n"]) for r in parsed] == [
        (None, None, 3), (0.5, None, None)]
    nested = {"a": [1.0, math.nan, {"b": (math.inf,)}], "when": Path("x")}
    assert strict_loads(jsonout.dumps(nested)) == {"a": [1.0, None, {"b": [None]}], "when": "x"}


def test_runs_format_json_is_strict_json_even_for_a_stored_nan(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'robustlab.db'}"
    migrate.upgrade(url)
    store = Store(url)
    try:  # a row from before the limits: SQLAlchemy's JSON writes NaN as the bare token
        store.add_spec("s1", "limits", "theory", None, THEORY, {"name": "limits"})
        store.add_runs("s1", [_run(7, params={"svm_c": math.nan, "eps": math.inf})])
    finally:
        store.close()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROBUSTLAB_")}
    result = subprocess.run([ROBUSTLAB, "runs", "--format", "json"], cwd=tmp_path,
                            env=env | {"ROBUSTLAB_DATABASE_URL": url}, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    (run,) = strict_loads(result.stdout)
    assert run["params"] == {"svm_c": None, "eps": None} and run["seed"] == 7
