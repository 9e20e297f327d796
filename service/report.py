"""``robustlab report``: the paper's Table 4 and Figures 1-8 regenerated from the results database.

``collect`` reads the succeeded runs through ``Store`` (evaluation rows, the few metrics the
report needs, artifact rows). ``build_report`` turns them into sections with pure functions
(no database, no files): Markdown, LaTeX tables (``service.results.latex_tabular``) and PNG
figures drawn with matplotlib's Agg canvas. ``write_report`` writes ``report.md``,
``figures/*.png`` (regenerated figures and copies of the runs' own pictures) and
``tables/*.tex``.

Every claim of the paper that robustlab reproduces is checked on our numbers and marked
✅ holds, ❌ does not hold or ➖ no data, with the numbers that decide it; the paper's numbers
stand beside ours where the paper prints them. A section without runs says which spec to run.

Tolerances are sampling error: an accuracy ``a`` measured on ``n`` examples has standard error
``sqrt(a (1 - a) / n)``, floored at ``1/n`` so that 0% and 100% are not treated as exact, and a
claim allows ``SIGMAS`` of them (of the difference, when two measurements are
compared). Where several runs measured the same thing, the newest run's number is used.
"""

from __future__ import annotations

import io
import math
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from service.results import latex_tabular
from service.specs.models import TheoryDistribution
from service.store.repository import ArtifactInfo, MetricInfo, RunInfo, Store

SIGMAS = 4.0
"""Standard errors a measured accuracy may stray from what a claim compares it with."""

E1_SPEC = "specs/paper/e1_theory.yaml"
FIG1_SPECS = {
    "mnist": "specs/paper/e2_fig1_mnist.yaml",
    "cifar10": "specs/paper/e2_fig1_cifar10.yaml",
    "restricted_imagenet": "specs/paper/e2_fig1_restricted_imagenet.yaml",
}
TABLE4_SPEC = "specs/paper/e3_table4_binary_mnist.yaml"
FIG2_SPEC = "specs/paper/e3_fig2_linear_features.yaml"

FIG1_PAPER_EPS = {
    ("mnist", "linf"): 0.3, ("mnist", "l2"): 1.5,
    ("cifar10", "linf"): 4 / 255, ("cifar10", "l2"): 80 / 255,
    ("restricted_imagenet", "linf"): 0.005, ("restricted_imagenet", "l2"): 1.0,
}
"""Table 2: the largest training radius of each Figure 1 curve (pixels in [0, 1])."""

TABLE4_EPS = 0.2
TABLE4_PAPER = {
    "standard": (98.38, 70.05, 13.69, 14.95, 41.08),
    "adversarial": (94.05, 92.10, 76.05, 74.65, 13.69),
}
"""Table 4 as printed: std train, std test, adv train, adv test (%), ||w||_1."""
TABLE4_ADVERSARIAL_GAP = 0.20
"""How much higher adversarial test accuracy must be after adversarial training to count as
"much higher" (the paper: 60 points; REPRODUCTION.md measured 46 on the 10k-digit MNIST)."""

REPORT_METRICS = (
    "closed_form_std_accuracy", "closed_form_adv_accuracy", "theorem_2_1_bound", "weight_x1",
    "weight_rest_l1", "weight_l1", "low_correlation_weight_fraction", "target_agreement",
    "gradient_edge_alignment",
)
"""The only metrics the report reads (training curves are left in the database)."""

Verdict = Literal["holds", "fails", "no_data"]
VERDICT_LABELS: dict[Verdict, str] = {
    "holds": "✅ holds", "fails": "❌ does not hold", "no_data": "➖ no data",
}

Row = dict[str, Any]


# --------------------------------------------------------------------------- claims


@dataclass(frozen=True)
class Claim:
    """One claim of the paper, judged on our numbers."""

    section: str
    text: str
    verdict: Verdict
    evidence: str
    """The numbers that decide it, or what is missing."""

    @property
    def label(self) -> str:
        return VERDICT_LABELS[self.verdict]


def judge(section: str, text: str, holds: bool, evidence: str) -> Claim:
    return Claim(section, text, "holds" if holds else "fails", evidence)


def no_data(section: str, text: str, reason: str) -> Claim:
    return Claim(section, text, "no_data", reason)


def standard_error(accuracy: float, n: int) -> float:
    """Binomial standard error, floored so that an accuracy of exactly 0 or 1 has one."""
    n = max(n, 1)
    return math.sqrt(max(accuracy * (1 - accuracy), 1 / n) / n)


def tolerance(*measured: tuple[float, int]) -> float:
    """``SIGMAS`` standard errors of a sum or difference of independent accuracies."""
    return SIGMAS * math.sqrt(sum(standard_error(a, n) ** 2 for a, n in measured))


# --------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class ReportInputs:
    """What the report reads from the store: succeeded runs (newest first) and their results."""

    runs: list[RunInfo]
    rows: list[Row]
    metrics: list[MetricInfo]
    artifacts: list[ArtifactInfo]
    left_out: dict[str, int] = field(default_factory=dict)
    """Runs not used because they have not succeeded, counted by status."""
    experiments: tuple[str, ...] = ()
    """The experiments asked for; empty means all."""

    def runs_of_kind(self, kind: str) -> list[RunInfo]:
        return [run for run in self.runs if run.kind == kind]

    def rows_of(self, runs: Iterable[RunInfo]) -> list[Row]:
        ids = {run.id for run in runs}
        return [row for row in self.rows if row["run_id"] in ids]

    def artifacts_of(self, run_ids: Iterable[str], kinds: Iterable[str]) -> list[ArtifactInfo]:
        ids, wanted = set(run_ids), set(kinds)
        return [a for a in self.artifacts if a.run_id in ids and a.kind in wanted]

    def recency(self) -> dict[str, int]:
        """Run id -> position among the runs, 0 for the newest."""
        return {run.id: index for index, run in enumerate(self.runs)}


def collect(store: Store, experiments: Sequence[str] = ()) -> ReportInputs:
    """Read everything the report needs; only succeeded runs count (others are counted)."""
    runs = _runs(store, experiments)
    succeeded = [run for run in runs if run.status == "succeeded"]
    ids = {run.id for run in succeeded}
    rows = store.results(run_ids=sorted(ids)) if ids else []
    metrics = [metric for name in REPORT_METRICS for metric in store.metrics(name=name)
               if metric.run_id in ids]
    artifacts = [artifact for artifact in store.artifacts() if artifact.run_id in ids]
    left_out = Counter(run.status for run in runs if run.status != "succeeded")
    return ReportInputs(succeeded, rows, metrics, artifacts, dict(left_out), tuple(experiments))


def _runs(store: Store, experiments: Sequence[str]) -> list[RunInfo]:
    if not experiments:
        return store.list_runs()
    runs = {run.id: run for name in experiments for run in store.list_runs(experiment=name)}
    return sorted(runs.values(), key=lambda r: (-r.created_at.timestamp(), r.cell, r.id))


# --------------------------------------------------------------------------- report


@dataclass
class Section:
    """One part of the report: its Markdown, claims, figures and tables."""

    title: str
    markdown: list[str] = field(default_factory=list)
    """Paragraphs, tables and image links, joined by blank lines."""
    claims: list[Claim] = field(default_factory=list)
    figures: dict[str, bytes] = field(default_factory=dict)
    """Regenerated PNGs: file name under ``figures/`` -> bytes."""
    copies: dict[str, ArtifactInfo] = field(default_factory=dict)
    """The runs' own pictures: file name under ``figures/`` -> the artifact to copy."""
    tables: dict[str, str] = field(default_factory=dict)
    """LaTeX: file name under ``tables/`` -> text."""
    run_ids: set[str] = field(default_factory=set)
    """The runs whose numbers or pictures the section shows (for the provenance table)."""


@dataclass
class Report:
    sections: list[Section]
    inputs: ReportInputs
    generated_at: datetime

    @property
    def claims(self) -> list[Claim]:
        return [claim for section in self.sections for claim in section.claims]

    def used_runs(self) -> list[RunInfo]:
        ids = set().union(*(section.run_ids for section in self.sections))
        return [run for run in self.inputs.runs if run.id in ids]

    def markdown(self) -> str:
        parts = [self._header(), "## Claims", self._summary()]
        for section in self.sections:
            parts.append(f"## {section.title}")
            parts += section.markdown
            if section.claims:
                parts.append(_claim_list(section.claims))
        parts += ["## Provenance", _provenance(self.used_runs())]
        return "\n\n".join(parts) + "\n"

    def _header(self) -> str:
        scope = (", ".join(f"`{name}`" for name in self.inputs.experiments)
                 if self.inputs.experiments else "all experiments")
        left_out = ", ".join(f"{count} {status}" for status, count
                             in sorted(self.inputs.left_out.items()))
        lines = [
            '# robustlab report: "Robustness may be at odds with accuracy"',
            "",
            f"Generated {self.generated_at:%Y-%m-%d %H:%M} UTC from {len(self.inputs.runs)} "
            f"succeeded run(s) of {scope}"
            + (f"; left out (not succeeded): {left_out}." if left_out else "."),
            "Accuracies are percentages of the test split unless a column says otherwise. "
            f"Claims allow {SIGMAS:g} standard errors of sampling noise; where several runs "
            "measured the same thing, the newest is used.",
        ]
        return "\n".join(lines)

    def _summary(self) -> str:
        rows = [[str(i), claim.section, claim.text, claim.label, claim.evidence]
                for i, claim in enumerate(self.claims, 1)]
        counts = Counter(claim.verdict for claim in self.claims)
        totals = ", ".join(f"{counts[v]} {VERDICT_LABELS[v]}" for v in VERDICT_LABELS)
        return totals + "\n\n" + markdown_table(["#", "section", "claim", "verdict", "numbers"],
                                                rows)


def build_report(inputs: ReportInputs, now: datetime | None = None) -> Report:
    """Every section, in the paper's order."""
    sections = [
        theory_section(inputs),
        figure1_section(inputs),
        table4_section(inputs),
        *(gallery_section(inputs, gallery) for gallery in GALLERIES),
    ]
    return Report(sections, inputs, now or datetime.now(UTC))


def write_report(report: Report, out_dir: Path, read: Callable[[ArtifactInfo], bytes]) -> Path:
    """Write ``report.md``, ``figures/`` and ``tables/`` under ``out_dir``; return report.md.

    ``read`` gives an artifact's bytes (``Store.storage.get`` of its path). Files of an earlier
    report that this one does not write are left alone.
    """
    figures, tables = out_dir / "figures", out_dir / "tables"
    figures.mkdir(parents=True, exist_ok=True)
    tables.mkdir(parents=True, exist_ok=True)
    for section in report.sections:
        for name, data in section.figures.items():
            (figures / name).write_bytes(data)
        for name, artifact in section.copies.items():
            (figures / name).write_bytes(read(artifact))
        for name, text in section.tables.items():
            (tables / name).write_text(text)
    path = out_dir / "report.md"
    path.write_text(report.markdown())
    return path


def generate(store: Store, out_dir: Path, experiments: Sequence[str] = ()) -> Report:
    """Collect, build and write the report; what ``robustlab report`` does."""
    report = build_report(collect(store, experiments))
    write_report(report, out_dir, lambda artifact: store.storage.get(artifact.path))
    return report


# --------------------------------------------------------------------------- formatting


def pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.2f}"


def num(value: float | None, digits: int = 4) -> str:
    return "–" if value is None else f"{value:.{digits}g}"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub-flavoured Markdown table; ``|`` inside cells is escaped."""
    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    return "\n".join([line(header), line(["---"] * len(header)), *map(line, rows)])


def _claim_list(claims: Sequence[Claim]) -> str:
    return "\n".join(f"- {claim.label}: {claim.text} ({claim.evidence})" for claim in claims)


def _run_hint(spec: str) -> str:
    return f"`robustlab run {spec}`"


def _provenance(runs: Sequence[RunInfo]) -> str:
    if not runs:
        return "No runs used."
    rows = [[f"`{run.id}`", run.experiment, run.kind,
             " ".join(f"{k}={v}" for k, v in run.params.items()) or "–",
             run.git_sha or "–", (run.data_hash or "–")[:16], f"`{run.spec_hash[:12]}`",
             run.device or "–",
             f"{run.finished_at:%Y-%m-%d %H:%M}" if run.finished_at else "–"]
            for run in runs]
    return markdown_table(["run", "experiment", "kind", "params", "git sha", "data hash",
                           "spec hash", "device", "finished (UTC)"], rows)


LATEX_WORDS = {"ε": "eps", "η": "eta", "‖w‖₁": "L1 norm of w", "‖w_rest‖₁": "L1 of w rest",
               "|w1|": "abs w1", "–": "--"}
"""Unicode of the Markdown tables spelled out for LaTeX (pdflatex lacks these glyphs)."""


def latex_table(header: Sequence[str], rows: Sequence[Sequence[str]], align: str,
                caption: str) -> str:
    """``latex_tabular`` of a Markdown table's cells, with its Unicode spelled out."""
    def ascii_text(text: str) -> str:
        for word, spelled in LATEX_WORDS.items():
            text = text.replace(word, spelled)
        return text

    return latex_tabular([ascii_text(h) for h in header],
                         [[ascii_text(c) for c in row] for row in rows],
                         align=align, caption=caption)


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text)


def copy_name(artifact: ArtifactInfo) -> str:
    """The file name of an artifact's copy under ``figures/``: unique per run and name."""
    return _safe_name(f"{artifact.run_id}_{artifact.name}")


def image(path: str, alt: str) -> str:
    return f"![{alt}](figures/{path})"


def _png(figure: Figure) -> bytes:
    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return buffer.getvalue()


def newest(rows: Iterable[Row], key: Callable[[Row], Any],
           recency: dict[str, int]) -> dict[Any, Row]:
    """For each key, the row of the newest run (rows of runs not in ``recency`` are ignored)."""
    chosen: dict[Any, Row] = {}
    for row in rows:
        if row["run_id"] not in recency:
            continue
        k = key(row)
        if k not in chosen or recency[row["run_id"]] < recency[chosen[k]["run_id"]]:
            chosen[k] = row
    return chosen


def is_clean(row: Row) -> bool:
    return row["attack"] == "none" and row["eval_eps"] == 0


def metric_value(metrics: Iterable[MetricInfo], **tags: Any) -> float | None:
    """The value of the first metric whose tags have these values (floats compared closely)."""
    for metric in metrics:
        if all(_tag_matches(metric.tags.get(k), v) for k, v in tags.items()):
            return metric.value
    return None


def _tag_matches(stored: Any, wanted: Any) -> bool:
    """Tags went through JSON: compare radii closely, everything else exactly."""
    if isinstance(wanted, float) and isinstance(stored, int | float):
        return math.isclose(stored, wanted, rel_tol=1e-9, abs_tol=1e-12)
    return stored == wanted


# --------------------------------------------------------------------------- E1: theory


E1_TITLE = "E1: the theory (Sec. 2.1-2.2, Theorems 2.1 and 2.2)"
E1_CLAIMS = (
    "f_avg's accuracy matches its closed form Φ((η − ε)√d)",
    "the standard SVM has > 99% standard and < 1% adversarial accuracy at ε ≥ 2η",
    "the adversarially trained SVM has about p standard and adversarial accuracy",
    "every model is within Theorem 2.1's bound adv ≤ p/(1−p)·(1 − std) at ε ≥ 2η",
)


@dataclass(frozen=True)
class TheoryPoint:
    """One trained model at one evaluation radius, with what the theory says beside it."""

    model: str
    train_eps: float
    eval_eps: float
    accuracy: float
    standard: float
    n: int
    closed_form: float | None
    bound: float | None


@dataclass(frozen=True)
class TheoryRun:
    run: RunInfo
    dist: TheoryDistribution
    points: list[TheoryPoint]
    """One per model x train_eps x eval_eps (eval_eps 0: standard accuracy)."""
    weights: dict[tuple[str, float], tuple[float | None, float | None]]
    """(model, train_eps) -> (|w1|, ||w_rest||_1)."""
    transfer: list[Row]

    def attacked(self) -> list[TheoryPoint]:
        """The points at ε ≥ 2η, where Theorems 2.1 and 2.2 speak."""
        return [p for p in self.points if p.eval_eps > 0 and covers(self.dist, p.eval_eps)]


def covers(dist: TheoryDistribution, eps: float) -> bool:
    """Whether ``eps`` is at least 2η (up to rounding of the radius as written in a spec)."""
    return eps >= 2 * dist.eta * (1 - 1e-9)


def averaging_closed_form(dist: TheoryDistribution, eps: float) -> float:
    """f_avg's accuracy against the worst l_inf shift eps: Φ((η − eps)√d)."""
    z = (dist.eta - eps) * math.sqrt(dist.d)
    return 0.5 * (1 + math.erf(z / math.sqrt(2)))


def theorem_2_1_bound(p: float, standard: float) -> float:
    return p / (1 - p) * (1 - standard)


def theory_run(run: RunInfo, rows: Sequence[Row], metrics: Sequence[MetricInfo]) -> TheoryRun:
    """A theory run's points, closed forms (recorded, else computed) and bounds."""
    dist = TheoryDistribution.model_validate(run.resolved_spec.get("distribution", {}))
    main = [r for r in rows if r["variant"] == "" and r["split"] == "test"]
    standard = {(r["model"], r["train_eps"]): r["accuracy"] for r in main if is_clean(r)}
    points = []
    for row in main:
        key = (row["model"], row["train_eps"])
        if key not in standard:
            continue
        tags = {"model": row["model"], "train_eps": float(row["train_eps"]),
                "eval_eps": float(row["eval_eps"])}
        points.append(TheoryPoint(
            model=row["model"], train_eps=row["train_eps"], eval_eps=row["eval_eps"],
            accuracy=row["accuracy"], standard=standard[key], n=row["n"],
            closed_form=_closed_form(metrics, dist, tags),
            bound=(_bound(metrics, dist, tags, standard[key])
                   if row["eval_eps"] > 0 and covers(dist, row["eval_eps"]) else None),
        ))
    weights = {key: (metric_value(_named(metrics, "weight_x1"), model=key[0],
                                  train_eps=float(key[1])),
                     metric_value(_named(metrics, "weight_rest_l1"), model=key[0],
                                  train_eps=float(key[1])))
               for key in standard}
    transfer = [r for r in rows if r["variant"].startswith("transfer:")]
    return TheoryRun(run, dist, sorted(points, key=_theory_order), weights, transfer)


def _theory_order(point: TheoryPoint) -> tuple[int, float, float]:
    order = {"averaging": 0, "svm": 1, "logistic": 2}
    return order.get(point.model, 3), point.train_eps, point.eval_eps


def _named(metrics: Iterable[MetricInfo], name: str) -> list[MetricInfo]:
    return [m for m in metrics if m.name == name]


def _closed_form(metrics: Sequence[MetricInfo], dist: TheoryDistribution,
                 tags: dict[str, Any]) -> float | None:
    if tags["model"] != "averaging":
        return None
    name = "closed_form_std_accuracy" if tags["eval_eps"] == 0 else "closed_form_adv_accuracy"
    recorded = metric_value(_named(metrics, name), **tags)
    return recorded if recorded is not None else averaging_closed_form(dist, tags["eval_eps"])


def _bound(metrics: Sequence[MetricInfo], dist: TheoryDistribution, tags: dict[str, Any],
           standard: float) -> float:
    recorded = metric_value(_named(metrics, "theorem_2_1_bound"), **tags)
    return recorded if recorded is not None else theorem_2_1_bound(dist.p, standard)


def theory_claims(item: TheoryRun, section: str) -> list[Claim]:
    return [averaging_claim(item, section), standard_svm_claim(item, section),
            adversarial_svm_claim(item, section), bound_claim(item, section)]


def averaging_claim(item: TheoryRun, section: str) -> Claim:
    pairs = [(p, p.closed_form) for p in item.points
             if p.model == "averaging" and p.closed_form is not None]
    if not pairs:
        return no_data(section, E1_CLAIMS[0], "no f_avg rows in this run")
    misses = [p for p, closed in pairs if abs(p.accuracy - closed) > tolerance((closed, p.n))]
    evidence = "; ".join(f"ε={p.eval_eps:.4g}: {pct(p.accuracy)}% vs {pct(closed)}% "
                         f"(±{pct(tolerance((closed, p.n)))})" for p, closed in pairs)
    return judge(section, E1_CLAIMS[0], not misses, evidence)


def standard_svm_claim(item: TheoryRun, section: str) -> Claim:
    dist = item.dist
    if dist.eta * math.sqrt(dist.d) < 4 * (1 - 1e-6):
        return no_data(section, E1_CLAIMS[1], f"Theorem 2.2 needs η ≥ 4/√d; this run has "
                       f"η√d = {dist.eta * math.sqrt(dist.d):.3g}")
    points = [p for p in item.attacked() if p.model == "svm" and p.train_eps == 0]
    if not points:
        return no_data(section, E1_CLAIMS[1], "no standard SVM evaluated at ε ≥ 2η")
    standard = points[0].standard
    worst = max(p.accuracy for p in points)
    holds = standard > 0.99 and worst < 0.01
    return judge(section, E1_CLAIMS[1], holds,
                 f"std {pct(standard)}%, adv at most {pct(worst)}% over ε ∈ "
                 f"{{{', '.join(f'{p.eval_eps:.4g}' for p in points)}}}")


def adversarial_svm_claim(item: TheoryRun, section: str) -> Claim:
    """Trained at 2η ≤ eps < 2p − 1 (beyond that the optimum is the constant classifier,
    REPRODUCTION.md fact 1), evaluated clean and at every eps < 1."""
    dist = item.dist
    trained = [p for p in item.points if p.model == "svm" and covers(dist, p.train_eps)
               and p.train_eps < 2 * dist.p - 1 and p.eval_eps < 1]
    if not trained:
        return no_data(section, E1_CLAIMS[2], f"no SVM trained at 2η ≤ ε < 2p − 1 = "
                       f"{2 * dist.p - 1:.3g}")
    misses = [p for p in trained if abs(p.accuracy - dist.p) > tolerance((dist.p, p.n))]
    accuracies = ", ".join(f"{pct(p.accuracy)}" for p in trained)
    return judge(section, E1_CLAIMS[2], not misses,
                 f"p = {pct(dist.p)}%; train ε = "
                 f"{', '.join(sorted({f'{p.train_eps:.4g}' for p in trained}))}: std and adv "
                 f"{accuracies}% (±{pct(tolerance((dist.p, trained[0].n)))})")


def bound_claim(item: TheoryRun, section: str) -> Claim:
    """Adversarial accuracy at most the bound, allowing the sampling error of both accuracies
    (the theorem is about the population; the bound moves p/(1−p) times the standard
    accuracy's error). The two errors add rather than in quadrature: both accuracies come from
    the same test sample, and for the x1-only classifier, which sits exactly on the bound, they
    are the same error."""
    ratio = item.dist.p / (1 - item.dist.p)
    checked = [(p, p.bound) for p in item.attacked() if p.bound is not None]
    if not checked:
        return no_data(section, E1_CLAIMS[3], "no model evaluated at ε ≥ 2η")

    def allowed(p: TheoryPoint) -> float:
        return tolerance((p.accuracy, p.n)) + ratio * tolerance((p.standard, p.n))

    over = sorted(((p, bound) for p, bound in checked if p.accuracy > bound),
                  key=lambda pair: pair[1] - pair[0].accuracy)
    beyond = [p for p, bound in over if p.accuracy > bound + allowed(p)]
    shown = over[:3] or [min(checked, key=lambda pair: pair[1] - pair[0].accuracy)]
    details = "; ".join(f"{p.model} train ε={p.train_eps:.4g} at ε={p.eval_eps:.4g}: adv "
                        f"{pct(p.accuracy)}% vs bound {pct(bound)}% (±{pct(allowed(p))})"
                        for p, bound in shown)
    return judge(section, E1_CLAIMS[3], not beyond,
                 f"{len(checked) - len(beyond)}/{len(checked)} within; "
                 f"{len(over)} above the bound itself; " + ("closest: " if not over else "")
                 + details)


def theory_figure(item: TheoryRun) -> bytes:
    """Adversarial against standard accuracy at ε ≥ 2η, with Theorem 2.1's line."""
    figure = Figure(figsize=(5.5, 4.2))
    axes = figure.add_subplot()
    ratio = item.dist.p / (1 - item.dist.p)
    std = [i / 200 for i in range(201)]
    axes.plot(std, [min(1.0, max(0.0, ratio * (1 - s))) for s in std], "k--",
              label="Theorem 2.1 bound")
    by_model: dict[str, list[TheoryPoint]] = defaultdict(list)
    for point in item.attacked():
        by_model[point.model].append(point)
    for (model, points), marker in zip(sorted(by_model.items()), "osd^v", strict=False):
        axes.scatter([p.standard for p in points], [p.accuracy for p in points],
                     marker=marker, label=model, alpha=0.8)
    axes.set(xlabel="standard accuracy", ylabel="adversarial accuracy (ε ≥ 2η)",
             xlim=(0, 1.02), ylim=(-0.02, 1.02),
             title=f"p={item.dist.p:g}, d={item.dist.d}, η={item.dist.eta:.4g}")
    axes.legend(loc="upper right", fontsize=8)
    return _png(figure)


def theory_table(item: TheoryRun) -> tuple[list[str], list[list[str]]]:
    header = ["model", "train ε", "eval ε", "std acc", "adv acc", "closed form",
              "Thm 2.1 bound", "|w1|", "‖w_rest‖₁"]
    rows = []
    for p in item.points:
        w1, rest = item.weights.get((p.model, p.train_eps), (None, None))
        rows.append([p.model, num(p.train_eps), num(p.eval_eps), pct(p.standard),
                     pct(p.accuracy) if p.eval_eps > 0 else "–", pct(p.closed_form),
                     pct(p.bound), num(w1), num(rest)])
    return header, rows


def theory_section(inputs: ReportInputs) -> Section:
    section = Section(E1_TITLE)
    runs = inputs.runs_of_kind("theory")
    section.markdown.append(
        "The paper (p = 0.7, η ≥ 4/√d): f_avg and the standard SVM have > 99% standard and "
        "< 1% adversarial accuracy at ε = 2η; the adversarially trained SVM puts all weight on "
        "x1 and has 70% of both; Theorem 2.1 caps adversarial accuracy at p/(1−p)·δ = 7/3·δ "
        "for standard accuracy 1 − δ. Accuracies in %; `closed form` is f_avg's Φ((η − ε)√d).")
    if not runs:
        section.markdown.append(f"No E1 runs yet: {_run_hint(E1_SPEC)}")
        section.claims = [no_data("E1", text, f"run {E1_SPEC}") for text in E1_CLAIMS]
        return section
    latex = []
    for run in runs:
        item = theory_run(run, inputs.rows_of([run]), [m for m in inputs.metrics
                                                       if m.run_id == run.id])
        section.run_ids.add(run.id)
        label = "E1" if len(runs) == 1 else f"E1 {run.id}"
        section.markdown.append(
            f"### Run `{run.id}` ({run.experiment}): p = {item.dist.p:g}, d = {item.dist.d}, "
            f"η = {item.dist.eta:.4g} (2η = {2 * item.dist.eta:.4g})")
        header, rows = theory_table(item)
        section.markdown.append(markdown_table(header, rows))
        latex.append(latex_table(header, rows, align="llrrrrrrr", caption=(
            f"E1 run {run.id}: p={item.dist.p:g}, d={item.dist.d}, eta={item.dist.eta:.4g}; "
            "accuracies in %")))
        name = _safe_name(f"e1_tradeoff_{run.id}.png")
        section.figures[name] = theory_figure(item)
        pictures = [image(name, "adversarial vs standard accuracy, regenerated")]
        for artifact in inputs.artifacts_of([run.id], ["figure"]):
            section.copies[copy_name(artifact)] = artifact
            pictures.append(image(copy_name(artifact), f"the run's {artifact.name}"))
        section.markdown.append(" ".join(pictures))
        if item.transfer:
            section.markdown.append(_transfer_table(item.transfer))
        section.claims += theory_claims(item, label)
    section.tables["e1_theory.tex"] = "\n".join(latex)
    return section


def _transfer_table(rows: Sequence[Row]) -> str:
    body = [[r["variant"].removeprefix("transfer:"), num(r["eval_eps"]), pct(r["accuracy"]),
             pct(r["details"].get("target_standard_accuracy"))] for r in rows]
    return ("Transfer (end of Sec. 2.2): worst-case examples against the source, shown to a "
            "target trained on an independent sample.\n\n"
            + markdown_table(["source → target", "ε", "target acc", "target std acc"], body))


# --------------------------------------------------------------------------- E2: Figure 1


FIG1_TITLE = "Figure 1 (E2): standard accuracy against the training ε"
FIG1_DATASET_ORDER = ("mnist", "cifar10", "restricted_imagenet")


@dataclass(frozen=True)
class CurvePoint:
    train_eps: float
    standard: float
    n: int
    adversarial: dict[float, float]
    """Evaluation ε (of the curve's norm) -> worst accuracy over the attacks at it."""
    run_id: str


CurveKey = tuple[str, str, str]
"""(dataset, norm, experiment): one sweep's curve. Experiments are not mixed: a quick run
(``specs/quickstart.yaml``) must not replace a point of a paper-scale sweep."""


def figure1_curves(rows: Sequence[Row], recency: dict[str, int],
                   ) -> dict[CurveKey, list[CurvePoint]]:
    """Curve -> points by training ε; within an experiment, an ε-0 model recorded under another
    norm serves as the ε-0 point of a curve that has none (standard training is the same)."""
    test = [r for r in rows if r["split"] == "test" and r["variant"] == ""]
    clean = newest((r for r in test if is_clean(r)),
                   lambda r: (r["dataset"], r["train_norm"], r["experiment"], r["train_eps"]),
                   recency)
    curves: dict[CurveKey, list[CurvePoint]] = {}
    for key in sorted({(d, n, e) for d, n, e, _ in clean if n is not None}):
        chosen = {eps: row for (d, n, e, eps), row in clean.items() if (d, n, e) == key}
        if 0 not in chosen:
            shared = [row for (d, _, e, eps), row in clean.items()
                      if (d, e) == (key[0], key[2]) and eps == 0]
            if shared:
                chosen[0.0] = min(shared, key=lambda r: recency[r["run_id"]])
        curves[key] = [_curve_point(row, key[1], test) for _, row in sorted(chosen.items())]
    return curves


def _curve_point(clean: Row, norm: str, rows: Sequence[Row]) -> CurvePoint:
    attacked: dict[float, float] = {}
    for row in rows:
        if (row["run_id"] == clean["run_id"] and row["eval_norm"] == norm
                and row["eval_eps"] > 0 and row["dataset"] == clean["dataset"]
                and row["train_eps"] == clean["train_eps"]):
            eps = row["eval_eps"]
            attacked[eps] = min(attacked.get(eps, 1.0), row["accuracy"])
    return CurvePoint(clean["train_eps"], clean["accuracy"], clean["n"], attacked,
                      clean["run_id"])


def falls_text(dataset: str, norm: str) -> str:
    return f"{dataset} {norm}: standard accuracy falls as the training ε grows"


def falls_claim(key: CurveKey, points: Sequence[CurvePoint]) -> Claim:
    """Non-increasing step by step within sampling tolerance, and strictly lower at the
    largest ε than at ε 0."""
    dataset, norm, experiment = key
    section, text = f"Figure 1 ({experiment})", falls_text(dataset, norm)
    if not points or points[0].train_eps != 0 or len(points) < 2:
        return no_data(section, text, "needs ε_train = 0 and at least one ε_train > 0")
    rises = [(a, b) for a, b in zip(points, points[1:], strict=False)
             if b.standard > a.standard + tolerance((a.standard, a.n), (b.standard, b.n))]
    first, last = points[0], points[-1]
    paper = FIG1_PAPER_EPS.get((dataset, norm))
    evidence = (f"ε 0 → {last.train_eps:.4g}: {pct(first.standard)}% → {pct(last.standard)}%"
                + (f" (the paper's curve reaches ε {paper:.4g})" if paper else "")
                + "".join(f"; rises ε {a.train_eps:.4g} → {b.train_eps:.4g}: "
                          f"{pct(a.standard)}% → {pct(b.standard)}%" for a, b in rises))
    return judge(section, text, not rises and last.standard < first.standard, evidence)


def figure1_figure(curves: dict[CurveKey, list[CurvePoint]]) -> bytes:
    """One panel per curve: standard (solid) and adversarial (dashed) accuracy."""
    keys = list(curves)
    columns = min(3, len(keys))
    rows = math.ceil(len(keys) / columns)
    figure = Figure(figsize=(4.2 * columns, 3.4 * rows))
    for index, (dataset, norm, experiment) in enumerate(keys, 1):
        axes = figure.add_subplot(rows, columns, index)
        points = curves[(dataset, norm, experiment)]
        xs = [p.train_eps for p in points]
        axes.plot(xs, [100 * p.standard for p in points], "o-", label="standard accuracy")
        for eps in sorted({e for p in points for e in p.adversarial}):
            pairs = [(p.train_eps, 100 * p.adversarial[eps]) for p in points
                     if eps in p.adversarial]
            axes.plot(*zip(*pairs, strict=True), "s--", label=f"adversarial, ε={eps:.4g}")
        axes.set(title=f"{dataset} ({norm}), {experiment}", xlabel="ε_train",
                 ylabel="accuracy (%)")
        axes.legend(fontsize=7)
    figure.tight_layout()
    return _png(figure)


def _figure1_rows(curves: dict[CurveKey, list[CurvePoint]]) -> list[list[str]]:
    return [[dataset, norm, experiment, num(p.train_eps), pct(p.standard),
             "; ".join(f"{pct(acc)} (ε={eps:.4g})" for eps, acc in sorted(p.adversarial.items()))
             or "–", f"`{p.run_id}`"]
            for (dataset, norm, experiment), points in curves.items() for p in points]


def figure1_section(inputs: ReportInputs) -> Section:
    section = Section(FIG1_TITLE)
    section.markdown.append(
        "The paper (Fig. 1): with PGD adversarial training, standard accuracy declines steadily "
        "as ε_train grows (Table 2's largest radii: MNIST l_inf 0.3, l_2 1.5; CIFAR-10 l_inf "
        "4/255, l_2 80/255; Restricted ImageNet l_inf 0.005, l_2 1). One curve per dataset, "
        "norm and experiment; adversarial accuracy is the worst over the attacks run at each "
        "evaluation ε of the curve's norm.")
    runs = inputs.runs_of_kind("train")
    curves = figure1_curves(inputs.rows_of(runs), inputs.recency())
    curves = dict(sorted(curves.items(), key=lambda item: _curve_rank(item[0])))
    missing = [d for d in FIG1_DATASET_ORDER if not any(k[0] == d for k in curves)]
    section.markdown += [f"No {d} runs yet: {_run_hint(FIG1_SPECS[d])}" for d in missing]
    wanted: list[CurveKey] = [(d, n, "") for d, n in FIG1_PAPER_EPS if d in missing]
    for key in sorted([*curves, *wanted], key=_curve_rank):
        section.claims.append(falls_claim(key, curves[key]) if key in curves else no_data(
            "Figure 1", falls_text(key[0], key[1]), f"run {FIG1_SPECS[key[0]]}"))
    if not curves:
        return section
    section.run_ids |= {p.run_id for points in curves.values() for p in points}
    rows = _figure1_rows(curves)
    header = ["dataset", "norm", "experiment", "ε_train", "std acc", "adv acc", "run"]
    section.markdown.append(markdown_table(header, rows))
    section.figures["figure1.png"] = figure1_figure(curves)
    section.markdown.append(image("figure1.png", "Figure 1, regenerated"))
    section.tables["figure1.tex"] = latex_table(
        header[:-1], [row[:-1] for row in rows], align="lllrrl",
        caption="Figure 1: standard and adversarial test accuracy (%) against the training eps")
    return section


def _curve_rank(key: CurveKey) -> tuple[int, str, int, str, str]:
    """The paper's order: MNIST, CIFAR-10, Restricted ImageNet, then others; l_inf before l_2."""
    dataset, norm, experiment = key
    rank = FIG1_DATASET_ORDER.index(dataset) if dataset in FIG1_DATASET_ORDER else 99
    return rank, dataset, norm_rank(norm), norm, experiment


def norm_rank(norm: str | None) -> int:
    """l_inf before l_2 (the paper's order), then anything else."""
    return ("linf", "l2").index(norm) if norm in ("linf", "l2") else 2


# --------------------------------------------------------------------------- E3: Table 4


TABLE4_TITLE = "Table 4 and Figure 2 (E3): a linear classifier on binary MNIST (5 vs 7)"
TABLE4_CLAIMS = (
    "standard test accuracy: standard training > adversarial training",
    f"adversarial test accuracy: adversarial training ≫ standard (by > "
    f"{100 * TABLE4_ADVERSARIAL_GAP:.0f} points)",
    "‖w‖₁ is smaller after adversarial training",
)
LOW_WEIGHT_CLAIM = ("Fig. 2(b): the robust model puts a smaller share of its weight on pixels "
                    "below the correlation threshold")
TOPK_CLAIM = "Fig. 2(c): adversarial accuracy falls as k grows past the threshold"
TOPK_PATTERN = re.compile(r"^topk=(\d+)$")


@dataclass(frozen=True)
class Table4Row:
    training: str
    train_eps: float
    cells: tuple[float | None, float | None, float | None, float | None]
    """std train, std test, adv train, adv test (fractions)."""
    n_test: int
    weight_l1: float | None
    low_weight: tuple[float, float] | None
    """(share of |w| on pixels below the correlation threshold, the threshold)."""
    run_id: str


def table4_rows(rows: Sequence[Row], metrics: Sequence[MetricInfo],
                recency: dict[str, int]) -> list[Table4Row]:
    """Standard training (ε 0) and adversarial training (the ε nearest 0.2) on binary MNIST,
    each row read from the newest run that trained that model."""
    plain = [r for r in rows if r["dataset"] == "binary_mnist" and r["variant"] == ""
             and r["run_id"] in recency]
    radii = sorted({r["train_eps"] for r in plain if r["train_eps"] > 0},
                   key=lambda eps: abs(eps - TABLE4_EPS))
    chosen = [("standard", 0.0)] + ([("adversarial", radii[0])] if radii else [])
    result = []
    for training, train_eps in chosen:
        trained = [r for r in plain if r["train_eps"] == train_eps]
        if not trained:
            continue
        run_id = min((r["run_id"] for r in trained), key=recency.__getitem__)
        mine = [r for r in trained if r["run_id"] == run_id]
        std_train, std_test, adv_train, adv_test = (
            _table4_cell(mine, split, attacked)
            for attacked in (False, True) for split in ("train", "test"))
        n_test = next((r["n"] for r in mine if r["split"] == "test"), 0)
        mine_metrics = [m for m in metrics if m.run_id == run_id]
        weight = metric_value(_named(mine_metrics, "weight_l1"), train_eps=float(train_eps))
        low = next(((m.value, m.tags["threshold"])
                    for m in _named(mine_metrics, "low_correlation_weight_fraction")
                    if "threshold" in m.tags
                    and _tag_matches(m.tags.get("train_eps"), float(train_eps))), None)
        result.append(Table4Row(training, train_eps, (std_train, std_test, adv_train, adv_test),
                                n_test, weight, low, run_id))
    return result


def _table4_cell(rows: Sequence[Row], split: str, attacked: bool) -> float | None:
    """Clean accuracy, or the worst over attacks at the evaluation ε nearest 0.2."""
    mine = [r for r in rows if r["split"] == split and (r["eval_eps"] > 0) == attacked
            and (attacked or r["attack"] == "none")]
    if not mine:
        return None
    eps = min({r["eval_eps"] for r in mine}, key=lambda e: abs(e - TABLE4_EPS))
    return min(r["accuracy"] for r in mine if r["eval_eps"] == eps)


def table4_claims(found: Sequence[Table4Row]) -> list[Claim]:
    by = {row.training: row for row in found}
    if set(by) != {"standard", "adversarial"}:
        missing = ("E3 runs" if not by
                   else f"{({'standard', 'adversarial'} - set(by)).pop()} training")
        return [no_data("Table 4", text, f"no {missing} yet: run {TABLE4_SPEC}")
                for text in TABLE4_CLAIMS]
    std, adv = by["standard"], by["adversarial"]
    return [
        _compare(TABLE4_CLAIMS[0], std.cells[1], adv.cells[1], 0.0, "standard", "adversarial"),
        _compare(TABLE4_CLAIMS[1], adv.cells[3], std.cells[3], TABLE4_ADVERSARIAL_GAP,
                 "adversarial", "standard"),
        _compare_weights(std.weight_l1, adv.weight_l1),
    ]


def _compare(text: str, larger: float | None, smaller: float | None, gap: float,
             larger_name: str, smaller_name: str) -> Claim:
    if larger is None or smaller is None:
        return no_data("Table 4", text, "a cell of Table 4 is missing")
    return judge("Table 4", text, larger - smaller > gap,
                 f"{larger_name} {pct(larger)}% vs {smaller_name} {pct(smaller)}% "
                 f"(difference {100 * (larger - smaller):+.2f} points)")


def low_weight_claim(found: Sequence[Table4Row]) -> Claim:
    by = {row.training: row.low_weight for row in found}
    standard, adversarial = by.get("standard"), by.get("adversarial")
    if standard is None or adversarial is None:
        return no_data("Figure 2", LOW_WEIGHT_CLAIM, f"no low_correlation_weight_fraction for "
                       f"both models: run {TABLE4_SPEC}")
    return judge("Figure 2", LOW_WEIGHT_CLAIM, adversarial[0] < standard[0],
                 f"share of |w| below |corr| {adversarial[1]:g}: standard "
                 f"{pct(standard[0])}%, adversarial {pct(adversarial[0])}%")


def _compare_weights(standard: float | None, adversarial: float | None) -> Claim:
    text = TABLE4_CLAIMS[2]
    if standard is None or adversarial is None:
        return no_data("Table 4", text, "no weight_l1 metric for both models")
    return judge("Table 4", text, adversarial < standard,
                 f"standard {standard:.2f} vs adversarial {adversarial:.2f} "
                 f"(paper: 41.08 vs 13.69)")


def table4_markdown(found: Sequence[Table4Row]) -> tuple[list[str], list[list[str]]]:
    header = ["training", "", "std train", "std test", "adv train", "adv test", "‖w‖₁"]
    rows = []
    for row in found:
        paper = TABLE4_PAPER[row.training]
        rows.append([f"{row.training} (ε={row.train_eps:.3g})", "robustlab",
                     *map(pct, row.cells),
                     "–" if row.weight_l1 is None else f"{row.weight_l1:.2f}"])
        rows.append(["", "paper", *(f"{value:.2f}" for value in paper)])
    return header, rows


@dataclass(frozen=True)
class TopKPoint:
    k: int
    standard: float | None
    adversarial: float | None
    n: int
    run_id: str


def topk_points(rows: Sequence[Row], recency: dict[str, int]) -> list[TopKPoint]:
    """Fig. 2(c): standard training on the k most label-correlated pixels (``topk=K`` rows),
    each k read from the newest run that has it."""
    by_k: dict[int, list[Row]] = defaultdict(list)
    for row in rows:
        match = TOPK_PATTERN.match(row["variant"])
        if match and row["split"] == "test" and row["run_id"] in recency:
            by_k[int(match.group(1))].append(row)
    points = []
    for k, tagged in sorted(by_k.items()):
        run_id = min((r["run_id"] for r in tagged), key=recency.__getitem__)
        mine = [r for r in tagged if r["run_id"] == run_id]
        clean = next((r["accuracy"] for r in mine if is_clean(r)), None)
        points.append(TopKPoint(k, clean, _table4_cell(mine, "test", attacked=True),
                                mine[0]["n"], run_id))
    return points


def topk_claim(points: Sequence[TopKPoint]) -> Claim:
    """Past the k of highest adversarial accuracy (the threshold) it does not rise again beyond
    tolerance, and at the largest k it is lower by more than the tolerance."""
    measured = [(p, p.adversarial) for p in points if p.adversarial is not None]
    if len(measured) < 2:
        return no_data("Figure 2", TOPK_CLAIM, f"needs ≥ 2 values of k: run {FIG2_SPEC}")
    peak, top = max(measured, key=lambda pair: pair[1])
    after = [(p, acc) for p, acc in measured if p.k >= peak.k]
    last, bottom = after[-1]
    rises = [(a, b) for (a, x), (b, y) in zip(after, after[1:], strict=False)
             if y > x + tolerance((x, a.n), (y, b.n))]
    holds = last.k > peak.k and top - bottom > tolerance((top, peak.n), (bottom, last.n))
    return judge("Figure 2", TOPK_CLAIM, holds and not rises,
                 f"adv peaks at k={peak.k} ({pct(top)}%, std {pct(peak.standard)}%); "
                 f"at k={last.k}: {pct(bottom)}% (std {pct(last.standard)}%)"
                 + "".join(f"; rises k {a.k} → {b.k}" for a, b in rises))


def topk_figure(points: Sequence[TopKPoint]) -> bytes:
    figure = Figure(figsize=(5.5, 3.8))
    axes = figure.add_subplot()
    for attribute, style, label in (("standard", "o-", "standard accuracy"),
                                    ("adversarial", "s--", "adversarial accuracy")):
        pairs = [(p.k, 100 * getattr(p, attribute)) for p in points
                 if getattr(p, attribute) is not None]
        if pairs:
            axes.plot(*zip(*pairs, strict=True), style, label=label)
    axes.set(xscale="log", xlabel="k most label-correlated pixels", ylabel="accuracy (%)",
             title="Figure 2(c), regenerated")
    axes.legend(fontsize=8)
    return _png(figure)


def table4_section(inputs: ReportInputs) -> Section:
    section = Section(TABLE4_TITLE)
    section.markdown.append(
        "Logistic regression on MNIST 5 (−1) vs 7 (+1), exact l_inf worst case at ε = 0.2 in "
        "[0, 1]. The paper's Table 4 is shown as printed; REPRODUCTION.md warns that the text "
        "extraction may have shuffled its cells (standard training's 70.05 std test is "
        "suspicious). REPRODUCTION.md measured on the 10k-digit MNIST: standard 99.2 std / 26 "
        "adv, adversarial 96.4 std / 72 adv (test, %).")
    runs = inputs.runs_of_kind("linear_features")
    rows, recency = inputs.rows_of(runs), inputs.recency()
    found = table4_rows(rows, inputs.metrics, recency)
    if found:
        header, body = table4_markdown(found)
        section.markdown.append(markdown_table(header, body))
        section.markdown.append("Runs: " + ", ".join(f"{row.training} `{row.run_id}`"
                                                     for row in found))
        section.tables["table4.tex"] = latex_table(
            header, body, align="llrrrrr",
            caption="Table 4: binary MNIST, linear classifier, l_inf eps 0.2; accuracies in %")
        section.run_ids |= {row.run_id for row in found}
    else:
        section.markdown.append(f"No E3 runs yet: {_run_hint(TABLE4_SPEC)}")
    section.claims += [*table4_claims(found), low_weight_claim(found)]
    points = topk_points(rows, recency)
    if points:
        section.figures["figure2c.png"] = topk_figure(points)
        section.markdown.append(markdown_table(
            ["k", "std acc", "adv acc", "run"],
            [[str(p.k), pct(p.standard), pct(p.adversarial), f"`{p.run_id}`"] for p in points]))
        section.markdown.append(image("figure2c.png", "Figure 2(c), regenerated"))
        section.run_ids |= {p.run_id for p in points}
    else:
        section.markdown.append(f"No Figure 2(c) (top-k) runs yet: {_run_hint(FIG2_SPEC)}")
    section.claims.append(topk_claim(points))
    pictures = inputs.artifacts_of(section.run_ids, ["weights", "figure"])
    for artifact in pictures:
        section.copies[copy_name(artifact)] = artifact
    if pictures:
        section.markdown.append("Figure 2(a, b), the runs' own pictures:\n\n" + " ".join(
            image(copy_name(a), a.name) for a in pictures))
    return section


# --------------------------------------------------------------------------- E4-E6: galleries


@dataclass(frozen=True)
class Gallery:
    """One of the picture sections: which artifacts, which measure, which spec to run."""

    label: str
    title: str
    artifact_kind: str
    spec: str
    paper: str
    metric: str | None = None
    claim: str = ""


GALLERIES = (
    Gallery("Figures 3, 6, 7", "Figures 3, 6, 7 (E4): large-ε adversarial examples", "large_eps",
            "specs/paper/e4_large_eps.yaml",
            "The paper: targeted PGD far outside the training ε makes robust models' inputs "
            "look like the target class and standard models' look like noise. Measure: how "
            "often an independently trained model classifies the examples as the target "
            "(`target_agreement`).",
            "target_agreement",
            "large-ε examples are classified as the target more often for robust models"),
    Gallery("Figure 4", "Figure 4 (E5): interpolation to the large-ε example", "interpolation",
            "specs/paper/e5_interpolation.yaml",
            "The paper: for robust models the path from the image to its large-ε adversarial "
            "example is perceptually smooth between the classes."),
    Gallery("Figures 5, 8", "Figures 5, 8 (E6): loss gradients", "gradients",
            "specs/paper/e6_gradients.yaml",
            "The paper: robust models' input gradients align with edges and shapes, standard "
            "models' look like noise. Measure: correlation of |gradient| with the image's Sobel "
            "edges (`gradient_edge_alignment`).",
            "gradient_edge_alignment",
            "input gradients align with image edges more for robust models"),
)


@dataclass(frozen=True)
class ModelLabel:
    """A model of a visualisation run: its label and how it was trained (when known)."""

    label: str
    train_norm: str | None
    train_eps: float | None

    @property
    def robust(self) -> bool | None:
        return None if self.train_eps is None else self.train_eps > 0

    def describe(self) -> str:
        """The label with how the model was trained, unless the label already says it."""
        if self.train_eps is None:
            return self.label
        trained = ("standard" if self.train_eps == 0
                   else f"{self.train_norm or ''} ε={self.train_eps:.4g}".strip())
        return self.label if self.label == trained else f"{self.label} ({trained})"


LABEL_KEYS = ("label", "model")
"""Where metadata and tags name the model: the brief's ``label``; the visualize kind (and the
dashboard's galleries) use ``model``."""


def model_labels(artifacts: Iterable[ArtifactInfo]) -> dict[str, ModelLabel]:
    """Label -> model, from artifacts' metadata, for tags that name a model by label only."""
    labels: dict[str, ModelLabel] = {}
    for artifact in artifacts:
        model = model_of(artifact.metadata, {})
        if model is not None and model.train_eps is not None:
            labels.setdefault(model.label, model)
    return labels


def model_of(tags: dict[str, Any], known: dict[str, ModelLabel]) -> ModelLabel | None:
    """The model that metadata or tags describe: by label and ``train_norm``/``train_eps``;
    a label alone is looked up in ``known``; ``None`` when neither is there."""
    eps = tags.get("train_eps")
    label = next((str(tags[key]) for key in LABEL_KEYS if tags.get(key) is not None), None)
    if label is None:
        if eps is None:
            return None
        label = ("standard" if eps == 0
                 else f"{tags.get('train_norm') or ''} ε={float(eps):.4g}".strip())
    if eps is None:
        return known.get(label, ModelLabel(label, None, None))
    return ModelLabel(label, tags.get("train_norm"), float(eps))


def _order(model: ModelLabel) -> tuple[int, int, float, str]:
    """Standard models first, then robust ones (l_inf before l_2), then unknown ones."""
    return (0 if model.robust is False else 1 if model.robust else 2,
            norm_rank(model.train_norm), model.train_eps or 0.0, model.label)


Attack = tuple[Any, Any]
"""An attack's (norm, eps) from metadata or tags; (None, None) where there is none."""


def attack_of(tags: dict[str, Any]) -> Attack:
    return tags.get("norm"), tags.get("eps")


def _attack_order(attack: Attack) -> tuple[int, str]:
    return norm_rank(attack[0]), str(attack[1])


def attack_text(attack: Attack) -> str:
    """``linf ε=0.3`` for an attack's (norm, eps); ``–`` when neither is known."""
    norm, eps = attack
    if norm is None and eps is None:
        return "–"
    return f"{norm or ''} ε={eps:.4g}".strip() if isinstance(eps, int | float) else str(norm)


def gallery_grid(artifacts: Sequence[ArtifactInfo], labels: dict[str, ModelLabel]) -> str:
    """Pictures side by side: a column per model, a row per attack (norm, ε) when given."""
    cells: dict[Attack, dict[ModelLabel, list[ArtifactInfo]]] = defaultdict(
        lambda: defaultdict(list))
    unlabelled = []
    for artifact in artifacts:
        model = model_of(artifact.metadata, labels)
        if model is None:
            unlabelled.append(artifact)
        else:
            cells[attack_of(artifact.metadata)][model].append(artifact)
    columns = sorted({model for row in cells.values() for model in row}, key=_order)
    rows = [[attack_text(attack), *(" ".join(image(copy_name(a), a.name)
                                            for a in by_model.get(model, [])) or "–"
                                   for model in columns)]
            for attack, by_model in sorted(cells.items(), key=lambda item: _attack_order(item[0]))]
    parts = [markdown_table(["attack", *(m.describe() for m in columns)], rows)] if rows else []
    parts += [image(copy_name(a), a.name) for a in unlabelled]
    return "\n\n".join(parts)


@dataclass(frozen=True)
class Measured:
    model: ModelLabel
    attack: Attack
    value: float
    count: int


def measured(metrics: Iterable[MetricInfo], labels: dict[str, ModelLabel]) -> list[Measured]:
    """Mean of a metric per model and attack, over images, judges and steps."""
    groups: dict[tuple[ModelLabel, Attack], list[float]] = defaultdict(list)
    for metric in metrics:
        model = model_of(metric.tags, labels)
        if model is not None:
            groups[(model, attack_of(metric.tags))].append(metric.value)
    return [Measured(model, attack, sum(values) / len(values), len(values))
            for (model, attack), values in sorted(
                groups.items(), key=lambda item: (_attack_order(item[0][1]), _order(item[0][0])))]


def robust_higher_claim(gallery: Gallery, section: str, values: Sequence[Measured]) -> Claim:
    """Within every attack setting that has both, each robust model scores above every
    standard one."""
    verdicts, evidence = [], []
    for attack in sorted({v.attack for v in values}, key=_attack_order):
        same = [v for v in values if v.attack == attack]
        robust = [v for v in same if v.model.robust]
        standard = [v for v in same if v.model.robust is False]
        if not robust or not standard:
            continue
        verdicts.append(min(v.value for v in robust) > max(v.value for v in standard))
        where = f"{attack_text(attack)}: " if attack != (None, None) else ""
        evidence.append(where + ", ".join(f"{v.model.describe()} {v.value:.3f}"
                                          for v in sorted(same, key=lambda v: _order(v.model))))
    if not verdicts:
        return no_data(section, gallery.claim, f"needs `{gallery.metric}` for a standard and a "
                       f"robust model: run {gallery.spec}")
    return judge(section, gallery.claim, all(verdicts), "; ".join(evidence))


def gallery_section(inputs: ReportInputs, gallery: Gallery) -> Section:
    section = Section(gallery.title, [gallery.paper])
    pictures = [a for a in inputs.artifacts if a.kind == gallery.artifact_kind]
    scores = [m for m in inputs.metrics if m.name == gallery.metric]
    run_ids = [run.id for run in inputs.runs
               if any(a.run_id == run.id for a in pictures)
               or any(m.run_id == run.id for m in scores)]
    if not run_ids:
        section.markdown.append(f"No {gallery.label} runs yet: {_run_hint(gallery.spec)}")
        if gallery.metric:
            section.claims.append(no_data(gallery.label, gallery.claim, f"run {gallery.spec}"))
        return section
    runs = {run.id: run for run in inputs.runs}
    for run_id in run_ids:
        section.run_ids.add(run_id)
        section.markdown.append(f"### Run `{run_id}` ({runs[run_id].experiment})")
        labels = model_labels(a for a in inputs.artifacts if a.run_id == run_id)
        mine = [a for a in pictures if a.run_id == run_id]
        combined = [a for a in inputs.artifacts_of([run_id], ["figure"])
                    if a.metadata.get("figure") == gallery.artifact_kind]
        section.copies |= {copy_name(a): a for a in (*mine, *combined)}
        if mine:
            section.markdown.append(gallery_grid(mine, labels))
        if combined:
            section.markdown.append("The run's side-by-side figures: " + " ".join(
                image(copy_name(a), a.name) for a in combined))
        if gallery.metric:
            values = measured((m for m in scores if m.run_id == run_id), labels)
            if values:
                section.markdown.append(markdown_table(
                    ["model", "attack", gallery.metric, "values averaged"],
                    [[v.model.describe(), attack_text(v.attack), f"{v.value:.3f}", str(v.count)]
                     for v in values]))
            label = gallery.label if len(run_ids) == 1 else f"{gallery.label} {run_id}"
            section.claims.append(robust_higher_claim(gallery, label, values))
    return section
