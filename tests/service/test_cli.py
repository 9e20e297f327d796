"""The ``robustlab`` command end to end: a real subprocess in a temporary directory."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.service.results_seed import seed_two_runs

REPO = Path(__file__).resolve().parents[2]
INVALID = sorted((REPO / "tests" / "specs" / "invalid").glob("*.yaml"))
ROBUSTLAB = shutil.which("robustlab", path=str(Path(sys.executable).parent)) or "robustlab"

SMALL_E1 = [
    "--set", "n_train=2000", "--set", "n_test=2000", "--set", "epochs=150",
    "--set", "distribution.d=400", "--set", "distribution.eta=0.2", "--set", "eps=[0.4]",
]


def robustlab(*args: str, cwd: Path, env: dict[str, str] | None = None,
              check: bool = False) -> subprocess.CompletedProcess[str]:
    if env is None:  # the defaults a new user gets: SQLite file and artifacts in the cwd
        env = {k: v for k, v in os.environ.items() if not k.startswith("ROBUSTLAB_")}
    result = subprocess.run([ROBUSTLAB, *args], cwd=cwd, env=env, capture_output=True,
                            text=True, timeout=300)
    if check and result.returncode != 0:
        raise AssertionError(f"robustlab {' '.join(args)} exited {result.returncode}:\n"
                             f"{result.stdout}\n{result.stderr}")
    return result


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """An empty directory where the default SQLite database and artifacts are created."""
    return tmp_path


@pytest.fixture
def migrated(workdir: Path) -> Path:
    robustlab("db", "upgrade", cwd=workdir, check=True)
    return workdir


def expectation(spec: Path) -> tuple[str, str]:
    first = spec.read_text().splitlines()[0]
    match = re.match(r"#\s*expect:\s*(\S+)\s+(\S+)", first)
    assert match, f"{spec.name} lacks its '# expect: PATH LINE' header"
    return match.group(1), match.group(2)


def test_help_lists_the_commands(workdir: Path) -> None:
    result = robustlab("--help", cwd=workdir, check=True)
    for command in ("validate", "run", "runs", "results", "db", "data", "schema", "dashboard"):
        assert command in result.stdout


def test_validate_names_file_line_and_path_of_every_invalid_spec(workdir: Path) -> None:
    result = robustlab("validate", *map(str, INVALID), cwd=workdir)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr + result.stdout
    for spec in INVALID:
        path, line = expectation(spec)
        lines = [text for text in result.stderr.splitlines() if spec.name in text]
        assert lines, f"nothing reported for {spec.name}"
        if line != "-":
            lines = [text for text in lines if f"{spec.name}:{line}" in text]
            assert lines, f"{spec.name}: no problem reported at line {line}:\n{result.stderr}"
        if path != "-":
            assert any(path in text for text in lines), f"{spec.name}: {path} not named"


@pytest.mark.parametrize("spec", INVALID, ids=[p.stem for p in INVALID])
def test_run_of_an_invalid_spec_exits_2_and_writes_nothing(spec: Path, workdir: Path) -> None:
    result = robustlab("run", str(spec), cwd=workdir)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert spec.name in result.stderr
    assert list(workdir.iterdir()) == [], "an invalid spec must leave nothing behind"


def test_validate_accepts_every_shipped_spec(workdir: Path) -> None:
    specs = sorted(str(p) for p in (REPO / "specs").rglob("*.yaml"))
    assert specs
    result = robustlab("validate", *specs, cwd=workdir)
    assert result.returncode == 0, result.stderr


def test_run_refuses_an_unmigrated_database_with_the_fix(workdir: Path) -> None:
    spec = REPO / "specs" / "paper" / "e1_theory.yaml"
    result = robustlab("run", str(spec), *SMALL_E1, cwd=workdir)
    assert result.returncode == 2
    assert "robustlab db upgrade" in result.stderr
    assert "Traceback" not in result.stderr


def test_e1_end_to_end(migrated: Path) -> None:
    spec = REPO / "specs" / "paper" / "e1_theory.yaml"
    run = robustlab("run", str(spec), *SMALL_E1, cwd=migrated, check=True)
    assert "succeeded" in run.stdout
    name = re.search(r"^name:\s*(\S+)", spec.read_text(), re.M).group(1)  # type: ignore[union-attr]

    rows = json.loads(robustlab("results", "--experiment", name, "--format", "json",
                                cwd=migrated, check=True).stdout)
    required = {"run_id", "experiment", "kind", "model", "dataset", "train_norm", "train_eps",
                "eval_norm", "eval_eps", "attack", "steps", "accuracy", "n"}
    assert rows and all(required <= set(row) for row in rows)
    assert {row["model"] for row in rows} >= {"averaging", "svm", "logistic"}
    assert all(0 <= row["accuracy"] <= 1 for row in rows)
    standard = [r for r in rows if r["eval_eps"] == 0 and r["attack"] == "none"]
    adversarial = [r for r in rows if r["eval_eps"] == 0.4]
    assert standard and adversarial
    assert {r["train_eps"] for r in rows} >= {0.0, 0.4}

    listed = json.loads(robustlab("runs", "--format", "json", cwd=migrated, check=True).stdout)
    assert len(listed) == 1 and listed[0]["status"] == "succeeded"
    run_id = listed[0]["id"]
    assert listed[0]["spec_hash"] and listed[0]["git_sha"] is not None
    assert listed[0]["package_versions"]["torch"]

    shown = json.loads(robustlab("runs", "show", run_id[:6], "--format", "json", cwd=migrated,
                                 check=True).stdout)
    assert shown["id"] == run_id
    assert shown["selected"] is None  # a theory run has no checkpoint to select
    assert any(a["name"].endswith(".png") for a in shown["artifacts"])
    for artifact in shown["artifacts"]:
        assert (migrated / "artifacts" / artifact["path"]).is_file()

    csv_out = robustlab("results", "--experiment", name, "--format", "csv", cwd=migrated,
                        check=True).stdout
    assert csv_out.splitlines()[0].startswith("run_id,experiment,kind,model")
    assert len(csv_out.splitlines()) == len(rows) + 1
    latex = robustlab("results", "--experiment", name, "--format", "latex", cwd=migrated,
                      check=True).stdout
    assert r"\begin{tabular}" in latex and r"\bottomrule" in latex
    table = robustlab("results", "--experiment", name, cwd=migrated, check=True).stdout
    assert "svm" in table


def test_sweep_records_one_run_per_cell(migrated: Path) -> None:
    spec = REPO / "specs" / "paper" / "e1_theory.yaml"
    result = robustlab("run", str(spec), *SMALL_E1, "--set", "sweep.distribution.p=[0.6,0.8]",
                       cwd=migrated, check=True)
    assert result.stdout.count("succeeded") == 2
    listed = json.loads(robustlab("runs", "--format", "json", cwd=migrated, check=True).stdout)
    assert sorted(r["params"]["distribution.p"] for r in listed) == [0.6, 0.8]
    assert len({r["spec_hash"] for r in listed}) == 2


def test_unknown_run_is_one_line(migrated: Path) -> None:
    result = robustlab("runs", "show", "doesnotexist", cwd=migrated)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and "doesnotexist" in result.stderr


@pytest.mark.parametrize(("variable", "value", "says", "args"), [
    ("ROBUSTLAB_MAX_YAML_DEPTH", "deep", "should be a valid integer", ["validate", "x.yaml"]),
    ("ROBUSTLAB_DB_OUTAGE_S", "-5", "greater than 0", ["runs"]),
    ("ROBUSTLAB_DB_RETRY_ATTEMPTS", "many", "valid integer", ["doctor"]),
])
def test_an_unreadable_setting_is_one_line_naming_the_variable(
        workdir: Path, variable: str, value: str, says: str, args: list[str]) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROBUSTLAB_")}
    for command in ([ROBUSTLAB], [sys.executable, "-m", "service.cli"]):
        result = subprocess.run([*command, *args], cwd=workdir, env={**env, variable: value},
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 2, result.stderr
        (line,) = result.stderr.strip().splitlines()
        assert line.startswith(f"error: {variable}={value!r}: ") and says in line


def test_db_downgrade_and_upgrade(migrated: Path) -> None:
    robustlab("db", "downgrade", "base", cwd=migrated, check=True)
    current = robustlab("db", "current", cwd=migrated, check=True).stdout
    assert "base" in current
    robustlab("db", "upgrade", cwd=migrated, check=True)
    assert "base (empty)" not in robustlab("db", "current", cwd=migrated, check=True).stdout


def test_running_an_identical_spec_again_shows_its_results_instead(migrated: Path) -> None:
    spec = REPO / "specs" / "paper" / "e1_theory.yaml"
    robustlab("run", str(spec), *SMALL_E1, cwd=migrated, check=True)
    (first,) = json.loads(robustlab("runs", "--format", "json", cwd=migrated, check=True).stdout)

    again = robustlab("run", str(spec), *SMALL_E1, cwd=migrated, check=True)
    assert f"{first['id']} done" in again.stderr and "--force" in again.stderr
    assert first["id"] in again.stdout and "svm" in again.stdout  # its results, not a new run
    assert len(json.loads(robustlab("runs", "--format", "json", cwd=migrated).stdout)) == 1

    robustlab("run", str(spec), *SMALL_E1, "--force", cwd=migrated, check=True)
    assert len(json.loads(robustlab("runs", "--format", "json", cwd=migrated).stdout)) == 2


def test_an_interrupted_run_is_resumed_from_its_last_checkpoint(migrated: Path,
                                                                mnist_data_dir: Path) -> None:
    from tests.workers.helpers import train_spec, wait_for

    env = {k: v for k, v in os.environ.items() if not k.startswith("ROBUSTLAB_")}
    env |= {"ROBUSTLAB_DATA_DIR": str(mnist_data_dir), "OMP_NUM_THREADS": "1"}
    spec = migrated / "interrupted.yaml"
    spec.write_text(train_spec("interrupted", epochs=6))

    def show() -> list[dict[str, object]]:
        return json.loads(robustlab("runs", "--format", "json", cwd=migrated, env=env).stdout)

    first = subprocess.Popen([ROBUSTLAB, "run", str(spec)], cwd=migrated, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        checkpoints = migrated / "runs"
        wait_for(lambda: list(checkpoints.glob("*/checkpoints/epoch-0002.pt")), 240,
                 "the second checkpoint", interval=0.1)
    finally:
        first.kill()  # SIGKILL: no chance to record anything
        first.wait()
    (run,) = show()
    assert run["status"] == "running"
    kept = {path.name: path.stat().st_mtime_ns
            for path in checkpoints.glob(f"{run['id']}/checkpoints/epoch-000[12].pt")}
    assert len(kept) == 2

    again = robustlab("run", str(spec), cwd=migrated, env=env, check=True)
    assert f"robustlab resume {run['id']}" in again.stderr and len(show()) == 1

    refused = robustlab("resume", str(run["id"]), cwd=migrated, env=env)
    assert refused.returncode == 1 and "--force" in refused.stderr  # it wrote progress just now

    resumed = robustlab("resume", str(run["id"]), "--force", cwd=migrated, env=env, check=True)
    assert f"{run['id']} succeeded" in resumed.stdout
    (done,) = show()
    assert done["status"] == "succeeded" and done["attempts"] == 2
    for name, mtime in kept.items():  # resumed after them, not trained again from scratch
        assert (checkpoints / str(run["id"]) / "checkpoints" / name).stat().st_mtime_ns == mtime
    rows = json.loads(robustlab("results", "--experiment", "interrupted", "--format", "json",
                                cwd=migrated, env=env, check=True).stdout)
    assert sorted(row["attack"] for row in rows) == ["none", "pgd", "worst_case"]
    resumed_again = robustlab("resume", str(run["id"]), cwd=migrated, env=env)
    assert resumed_again.returncode == 1 and "already succeeded" in resumed_again.stderr


# --------------------------------------------------------------------------- listings (issue 14)

LISTINGS_WITHOUT_TORCH = """
import sys
from service.cli import main
for args in (["runs"], ["runs", "--format", "json"], ["runs", "show", "{run}"], ["results"],
             ["results", "--format", "latex"], ["metrics", "{run}"],
             ["compare", "{run}", "{other}"]):
    try:
        main(args, standalone_mode=False)
    except SystemExit as exc:
        assert not exc.code, (args, exc.code)
print("TORCH", sorted(m for m in ("torch", "torchvision") if m in sys.modules))
"""


def test_runs_runs_show_and_results_import_no_torch(tmp_path: Path) -> None:
    seeded = seed_two_runs(tmp_path)
    code = LISTINGS_WITHOUT_TORCH.replace("{run}", seeded.standard).replace(
        "{other}", seeded.robust)
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=seeded.env(),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "TORCH []"


def test_results_table_and_latex_show_the_split(tmp_path: Path) -> None:
    seeded = seed_two_runs(tmp_path)
    table = robustlab("results", "--run", seeded.standard, cwd=tmp_path, env=seeded.env(),
                      check=True).stdout
    header = next(line for line in table.splitlines() if "model" in line)
    assert "split" in header
    assert sum(" train " in line for line in table.splitlines()) == 3
    latex = robustlab("results", "--run", seeded.standard, "--format", "latex", cwd=tmp_path,
                      env=seeded.env(), check=True).stdout
    assert r"model & dataset & split &" in latex
    assert latex.count(r"mnist\_cnn & mnist & train &") == 3


def test_results_beyond_the_limit_are_summarised_and_all_prints_every_row(
        tmp_path: Path) -> None:
    seeded = seed_two_runs(tmp_path)  # 12 rows
    summary = robustlab("results", "--limit", "5", cwd=tmp_path, env=seeded.env(), check=True)
    assert "12 rows summarised" in summary.stdout and "--all" in summary.stderr
    assert seeded.standard not in summary.stdout  # groups, not rows
    every = robustlab("results", "--limit", "5", "--all", cwd=tmp_path, env=seeded.env(),
                      check=True).stdout.splitlines()
    assert every[0].split()[:4] == ["run_id", "model", "dataset", "split"]
    assert len(every) == 2 + 12 and sum(seeded.robust in line for line in every) == 6
