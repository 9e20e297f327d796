"""In-process execution: ``run`` and ``resume``, with one progress bar per run.

``service.runner`` imports torch and the science, so it is imported inside the two commands:
``robustlab --help``, ``runs`` and ``results`` must not pay for torch (seconds) at start-up.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

import click
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from contract.specs.loading import load_spec_file
from contract.status import RunStatus
from service.cli.common import (
    EXIT_RUN_FAILED,
    UserError,
    err,
    first_line,
    friendly_errors,
    label,
    open_store,
    out,
    overrides_option,
)
from service.launch import Launch, launch_runs, nproc_default, parse_gpus
from service.preflight import preflight
from service.recording import record, resumable
from service.results import fetch_rows, to_table
from service.store.entities import RunInfo
from service.store.repository import Store


class _Bars:
    """One rich progress bar per run, fed by the runner's progress callback.

    Without a terminal (a log file, CI, nohup) bars cannot redraw, so a plain line is printed
    instead whenever a run's stage changes or it passes another tenth of its work.
    """

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.tasks: dict[str, TaskID] = {}
        self.logged: dict[str, tuple[str, int]] = {}

    def __call__(self, run_id: str, fraction: float, stage: str) -> None:
        if run_id not in self.tasks:
            self.tasks[run_id] = self.progress.add_task(run_id, total=1.0)
        self.progress.update(self.tasks[run_id], completed=fraction,
                             description=f"{run_id} {stage}"[:60])
        if not self.progress.console.is_terminal:
            mark = (stage.split(" ")[0], int(10 * fraction))
            if self.logged.get(run_id) != mark:
                self.logged[run_id] = mark
                self.progress.console.print(f"{run_id} {100 * fraction:5.1f}% {stage}",
                                            markup=False, highlight=False)


F = TypeVar("F", bound=Any)


def launch_options(fn: F) -> F:
    """The execution settings of ``run`` and ``resume``: how many processes, where, how."""
    options = [
        click.option("--nproc-per-node", type=int, default=None,
                     help="Processes on this node, one run over all of them (torchrun; default "
                          "ROBUSTLAB_NPROC_PER_NODE or 1). On CUDA, one per GPU; on the CPU, "
                          "gloo ranks."),
        click.option("--nnodes", type=int, default=1, show_default=True,
                     help="Machines taking part; each runs the same command."),
        click.option("--node-rank", type=int, default=0, show_default=True,
                     help="This machine's place among --nnodes; node 0 records the runs."),
        click.option("--rdzv-endpoint", default=None, metavar="HOST:PORT",
                     help="Node 0's address for the rendezvous of several nodes."),
        click.option("--backend", type=click.Choice(["gloo", "nccl"]), default=None,
                     help="Process-group backend (default: nccl on CUDA, gloo on the CPU)."),
        click.option("--no-sync-batchnorm", is_flag=True,
                     help="Keep BatchNorm statistics per rank (recorded in provenance)."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _launch(nproc_per_node: int | None, nnodes: int, node_rank: int, rdzv_endpoint: str | None,
            backend: str | None, no_sync_batchnorm: bool, gpus: str | None = None) -> Launch:
    try:
        return Launch(nproc_per_node=nproc_per_node or nproc_default(), nnodes=nnodes,
                      node_rank=node_rank, rdzv_endpoint=rdzv_endpoint, backend=backend,
                      sync_batchnorm=not no_sync_batchnorm, gpus=parse_gpus(gpus)).check()
    except ValueError as exc:
        raise UserError(str(exc)) from None


@click.command()
@click.argument("spec", type=click.Path(dir_okay=False))
@overrides_option
@click.option("--device", default=None, help="Override the spec's device (cpu, cuda, cuda:1).")
@click.option("--force", is_flag=True,
              help="Run cells again even if identical ones succeeded or were interrupted.")
@launch_options
@friendly_errors
def run(spec: str, overrides: Sequence[str], device: str | None, force: bool,
        nproc_per_node: int | None, nnodes: int, node_rank: int, rdzv_endpoint: str | None,
        backend: str | None, no_sync_batchnorm: bool) -> None:
    """Run a spec in-process (no broker): one run per sweep cell, then print the results.

    \b
    Cells identical to a succeeded run (same content hash) are not run again: their results
    are shown (--force runs them again). Cells identical to a queued or running run are left
    to it. Cells identical to an interrupted run are left to `robustlab resume RUN`, which
    continues it from its last checkpoint (--force starts a new run instead).
    With --nproc-per-node N (or several nodes), each run is one job over all the processes
    (torchrun): training.batch_size is the global batch, evaluation is sharded by batch, and
    the results equal a one-process run's; the spec and its hash do not change.
    """
    loaded = load_spec_file(spec, overrides)  # validate before touching the database (or torch)
    launch = _launch(nproc_per_node, nnodes, node_rank, rdzv_endpoint, backend,
                     no_sync_batchnorm)
    store = open_store()
    missing = preflight(loaded.spec, store, device=device)
    if missing:  # refused before anything is recorded
        raise UserError("; ".join(str(finding) for finding in missing))
    if launch.distributed:
        _run_distributed(loaded, store, launch, device=device, force=force)
        return
    from service import runner  # torch: only once the spec is known to be valid

    def announce(runs: Sequence[RunInfo]) -> None:
        if runs:
            err.print(f"{loaded.spec.name}: {len(runs)} run(s): {' '.join(r.id for r in runs)}")

    with runner.stop_on_signals(_stopped), _progress() as progress:
        outcome = runner.run_spec(loaded, store, device=device, force=force,
                                  on_progress=_Bars(progress), on_recorded=announce)
    for item in outcome.done:
        err.print(f"{label(item, 'done')}: an identical run already succeeded (--force runs "
                  "it again)", markup=False)
    for item in outcome.pending:
        if item.status == RunStatus.INTERRUPTED:
            err.print(f"{label(item, item.status)}: an identical run was interrupted; `robustlab "
                      f"resume {item.id}` continues it from its last checkpoint (--force starts "
                      "a new run)", markup=False)
        else:
            err.print(f"{label(item, item.status)}: an identical run is already {item.status}; "
                      "it is left to the process that has it (if that process is gone, "
                      f"`robustlab resume {item.id}` continues it)", markup=False)
    _finish(store, outcome.runs, shown=[*outcome.runs, *outcome.done], title=loaded.spec.name)


def _run_distributed(loaded: Any, store: Store, launch: Launch, *, device: str | None,
                     force: bool) -> None:
    """``run`` over several processes: node 0 records the cells, every node launches."""
    recorded = record(loaded, store, force=force) if launch.records else None
    runs = recorded.runs if recorded is not None else []
    if launch.records:
        err.print(f"{loaded.spec.name}: {len(runs)} run(s) over {launch.nproc_per_node} "
                  f"process(es) x {launch.nnodes} node(s): {' '.join(r.id for r in runs)}",
                  markup=False)
    if launch.records and not runs:
        done = recorded.done if recorded is not None else []
        _finish(store, [], shown=done, title=loaded.spec.name)
        return
    with _progress() as progress:
        outcome = launch_runs(store, [r.id for r in runs], launch, device=device,
                              on_progress=_Bars(progress))
    if not launch.records:
        if outcome.failure:
            raise UserError(f"node {launch.node_rank}: {outcome.failure}")
        out.print(f"node {launch.node_rank}: done", markup=False)
        return
    done = recorded.done if recorded is not None else []
    _finish(store, outcome.runs, shown=[*outcome.runs, *done], title=loaded.spec.name)


def tradeoff_sentences(rows: Sequence[dict[str, Any]]) -> list[str]:
    """The trade-off in two plain sentences when the rows hold a standard model (train_eps 0)
    and an adversarially trained one of the same architecture attacked in the same ball; then
    what to try next.

    A model is a run, its model name and its training eps: one theory or linear-features run
    holds standard and adversarially trained models side by side. Transfer rows (a variant)
    are another model's attack, not this model's worst case.
    """
    found: dict[tuple[str, str], tuple[dict[str, Any], dict[str, Any]]] = {}
    keys = sorted({(r["run_id"], r.get("model") or "", r["train_eps"]) for r in rows
                   if r["train_eps"] is not None})
    for run_id, name, train_eps in keys:
        mine = [r for r in rows if (r["run_id"], r.get("model") or "", r["train_eps"])
                == (run_id, name, train_eps) and r["split"] == "test" and not r.get("variant")]
        clean = next((r for r in mine if r["attack"] == "none"), None)
        worst = min((r for r in mine if r["attack"] != "none" and r["eval_eps"]),
                    key=lambda r: r["accuracy"], default=None)
        if clean is not None and worst is not None:
            found.setdefault((name, "robust" if train_eps > 0 else "standard"), (clean, worst))
    pairs = [(found[(name, "standard")], found[(name, "robust")])
             for name in sorted({name for name, _ in found})
             if (name, "standard") in found and (name, "robust") in found]
    pairs = [(standard, robust) for standard, robust in pairs
             if (standard[1]["eval_norm"], standard[1]["eval_eps"])
             == (robust[1]["eval_norm"], robust[1]["eval_eps"])]
    if not pairs:
        return []
    standard, robust = pairs[0]
    (s_clean, s_worst), (r_clean, r_worst) = standard, robust
    ball = f"{r_worst['eval_norm']} eps {r_worst['eval_eps']:g}"

    def pct(row: dict[str, Any]) -> str:
        return f"{100 * row['accuracy']:.1f}%"

    method = f"{r_clean['train_method']}, " if r_clean.get("train_method") else ""
    gain = 100 * (r_worst["accuracy"] - s_worst["accuracy"])
    cost = 100 * (s_clean["accuracy"] - r_clean["accuracy"])
    return [
        "",
        f"Standard training: {pct(s_clean)} of the test images right, {pct(s_worst)} under "
        f"the strongest attack at {ball}. Adversarial training "
        f"({method}eps {r_clean['train_eps']:g}): {pct(r_clean)} "
        f"right, {pct(r_worst)} under attack.",
        f"Robustness gained: {gain:+.1f} points under attack, "
        + (f"for {cost:.1f} points of standard accuracy given up." if cost > 0 else
           "with no standard accuracy given up at this scale (the paper's cost appears at "
           "larger eps and on harder data: specs/paper/)."),
        "Next: `robustlab dashboard` draws the trade-off; `robustlab report --out report/` "
        "writes the paper's tables and figures beside these numbers.",
    ]


def _stopped(stop: Any) -> None:
    """SIGTERM/SIGINT ended ``run`` or ``resume`` (exit 128 + signal): say how to go on."""
    which = f"run {stop.run_id}" if stop.run_id else "no run was executing;"
    err.print(f"stopped by {stop.signal_name}: {which} marked interrupted; `robustlab resume "
              f"{stop.run_id or 'RUN'}` continues it (queued cells of the spec: `robustlab "
              "resume` them, or run the spec again)", markup=False)


@click.command()
@click.argument("runs", nargs=-1, required=True)
@click.option("--device", default=None, help="Override the run's device (cpu, cuda, cuda:1).")
@click.option("--force", is_flag=True,
              help="Resume a run marked running even though it wrote progress recently.")
@launch_options
@friendly_errors
def resume(runs: Sequence[str], device: str | None, force: bool, nproc_per_node: int | None,
           nnodes: int, node_rank: int, rdzv_endpoint: str | None, backend: str | None,
           no_sync_batchnorm: bool) -> None:
    """Continue interrupted or failed runs in-process, from their last checkpoints.

    \b
    For a `robustlab run` stopped by Ctrl-C or a crash (still marked running), a failed run
    whose cause is fixed. Results already written are kept and not duplicated. Refused unless
    --force: a run marked running that wrote progress within the last two minutes (its process
    may be alive), and a run queued on a broker's queue (a worker will take it).
    """
    launch = _launch(nproc_per_node, nnodes, node_rank, rdzv_endpoint, backend,
                     no_sync_batchnorm)
    store = open_store()
    chosen = []
    for run_id in runs:
        item = store.get_run(run_id)
        reason = resumable(item, force=force)
        if reason is None:
            chosen.append(item)
        else:
            err.print(f"{item.id}: not resumed: {reason}", markup=False)
    if launch.distributed:
        with _progress() as progress:
            executed = launch_runs(store, [item.id for item in chosen], launch, device=device,
                                   on_progress=_Bars(progress)).runs
    else:
        from service import runner  # torch: only when something is executed

        with runner.stop_on_signals(_stopped), _progress() as progress:
            executed = [runner.execute_run(item.id, store, device=device,
                                           on_progress=_Bars(progress)) for item in chosen]
    _finish(store, executed, shown=executed, title="resumed")
    if len(chosen) < len(runs):
        raise SystemExit(EXIT_RUN_FAILED)


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(),
                    TextColumn("{task.percentage:>5.1f}%"), TimeElapsedColumn(),
                    console=err, transient=False)


def _finish(store: Store, executed: Sequence[RunInfo], *, shown: Sequence[RunInfo],
            title: str) -> None:
    """One line per executed run, the results table of ``shown``; exit 1 if any did not succeed."""
    for item in executed:
        line = label(item, item.status)
        if item.error:
            line += f": {first_line(item.error)}"
        (err if item.status != RunStatus.SUCCEEDED else out).print(line, markup=False)
    rows = fetch_rows(store, run_ids=[r.id for r in shown]) if shown else []
    if rows:
        out.print(to_table(rows, title=title))
        for line in tradeoff_sentences(rows):
            out.print(line, markup=False, highlight=False)
    if any(item.status != RunStatus.SUCCEEDED for item in executed):
        raise SystemExit(EXIT_RUN_FAILED)


COMMANDS: list[click.Command] = [run, resume]
