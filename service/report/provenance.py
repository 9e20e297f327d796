"""The report's last section: the machines, the commands and every run it used.

A number is only as good as the recipe that made it: each spec the report's runs came from is
printed as the command that records it again (the file and its ``--set`` overrides), followed
by its runs; the machines (host, CPU or GPU, torch threads, memory, package versions) say what
the timings mean.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping, Sequence

from service.analysis.compare import flatten
from service.report.render import markdown_table
from service.store.entities import RunInfo, SpecInfo

LINE_BREAK = re.compile(r"[ \t]*\r?\n[ \t]*")
"""A line break and the indentation around it: only these are folded, so a value's own spaces
(a quoted string's) survive and the printed command records the same spec."""

PACKAGES = ("torch", "python", "cuda")
"""The versions each machine line names (every run stores more; ``robustlab runs --json``)."""


def command_line(spec: SpecInfo) -> str:
    """The command that records this spec's runs again (``submit`` takes the same arguments)."""
    if spec.source_path is None:
        return f"# {spec.name}: submitted as text (the dashboard or the API), spec id {spec.id[:12]}"
    words = ["robustlab", "run", spec.source_path]
    for item in spec.overrides or ():  # a flow value written over lines, on one line
        words += ["--set", LINE_BREAK.sub(" ", item.strip())]
    line = " ".join(shlex.quote(word) for word in words)
    return line if spec.overrides is not None else (
        f"{line}  # overrides not recorded (a spec recorded before robustlab kept them)")


def provenance_markdown(runs: Sequence[RunInfo], specs: Mapping[str, SpecInfo]) -> str:
    """Machines, then one command per spec with its runs, then the table of every run."""
    if not runs:
        return "No runs used."
    return "\n\n".join([machines(runs), commands(runs, specs), run_table(runs)])


def machines(runs: Sequence[RunInfo]) -> str:
    """One line per distinct machine the runs ran on, with how many runs each."""
    counts: dict[str, int] = {}
    for run in runs:
        versions = ", ".join(f"{name} {run.package_versions[name]}" for name in PACKAGES
                             if name in run.package_versions)
        facts = [run.host or "unknown host", run.device or "unknown device",
                 run.provenance.get("machine"), versions or None]
        line = "; ".join(str(fact) for fact in facts if fact)
        counts[line] = counts.get(line, 0) + 1
    return "**Machines**\n\n" + "\n".join(f"- {line} ({count} run{'s' * (count != 1)})"
                                           for line, count in counts.items())


def commands(runs: Sequence[RunInfo], specs: Mapping[str, SpecInfo]) -> str:
    """The command of each spec, oldest first, and the runs it made that the report uses.

    Everything runs with the environment the report was made with (``ROBUSTLAB_*``);
    ``robustlab run`` skips cells that already succeeded, so rerunning a command continues it.
    """
    by_spec: dict[str, list[RunInfo]] = {}
    for run in sorted(runs, key=lambda r: (r.created_at, r.cell)):
        by_spec.setdefault(run.spec_id, []).append(run)
    blocks = []
    for spec_id, made in by_spec.items():
        spec = specs.get(spec_id)
        line = command_line(spec) if spec is not None else f"# spec {spec_id[:12]} not found"
        ids = " ".join(f"`{run.id}`" for run in made)
        blocks.append(f"```bash\n{line}\n```\n\n{len(made)} run(s): {ids}")
    return "**Commands** (the specs as recorded, with their overrides)\n\n" + "\n\n".join(blocks)


def run_table(runs: Sequence[RunInfo]) -> str:
    params = varying_params(runs)
    rows = [[f"`{run.id}`", run.experiment, run.kind, params[run.id] or "–",
             (run.git_sha or "–")[:12], (run.data_hash or "–")[:16], f"`{run.spec_hash[:12]}`",
             run.host or "–", run.device or "–", processes(run), wall(run),
             f"{run.finished_at:%Y-%m-%d %H:%M}" if run.finished_at else "–"]
            for run in runs]
    return "**Runs**\n\n" + markdown_table(
        ["run", "experiment", "kind", "params", "git sha", "data hash", "spec hash", "host",
         "device", "processes", "wall s", "finished (UTC)"], rows)


def varying_params(runs: Sequence[RunInfo]) -> dict[str, str]:
    """Each run's sweep values, flattened (``adversary.eps=0.1``), less those every run of its
    experiment in the table shares: what tells the cells apart, not the whole adversary."""
    flat = {run.id: flatten(run.params) for run in runs}
    by_experiment: dict[str, list[str]] = {}
    for run in runs:
        by_experiment.setdefault(run.experiment, []).append(run.id)
    shown: dict[str, str] = {}
    for ids in by_experiment.values():
        keys = sorted({key for run_id in ids for key in flat[run_id]})
        varying = [key for key in keys
                   if len({repr(flat[run_id].get(key)) for run_id in ids}) > 1 or len(ids) == 1]
        for run_id in ids:
            shown[run_id] = " ".join(f"{key}={flat[run_id][key]}" for key in varying
                                     if key in flat[run_id])
    return shown


def processes(run: RunInfo) -> str:
    """The world size a run ran at (1 for runs older than distributed execution)."""
    size = run.provenance.get("world_size", 1)
    nodes = run.provenance.get("nnodes", 1)
    backend = run.provenance.get("backend")
    return f"{size}" + (f" on {nodes} nodes" if nodes > 1 else "") + (
        f" ({backend})" if backend else "")


def wall(run: RunInfo) -> str:
    """Seconds from start to finish (a resumed run counts from its last start)."""
    duration = run.duration_s
    return "–" if duration is None else f"{duration:.0f}"
