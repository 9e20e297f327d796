"""``doctor``: what this machine and this deployment have, in one table.

The database (and whether its migrations are current), the broker and whether a worker
answers, the devices torch sees, the datasets under the data directory, the artifact
directory's free space and the dashboard's login mode. It exits 1 when the database is
unreachable or behind its migrations, or when something named in ``--require`` is missing.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import click
from rich.table import Table

from contract.datasets import DATASETS
from service.cli.common import first_line, out
from service.settings import Settings, get_settings
from service.store import migrate
from service.store.session import StoreError, safe_url

REQUIREMENTS = ("broker", "worker", "cuda")
EXIT_UNHEALTHY = 1


@dataclass(frozen=True)
class Check:
    """One row of the table: what was checked, what was found, whether it is fine."""

    name: str
    found: str
    ok: bool


def database(settings: Settings) -> Check:
    url = safe_url(settings.database_url)
    try:
        current = migrate.current_revision(settings.database_url)
    except StoreError as exc:
        return Check("database", f"{url}: unreachable ({first_line(str(exc))})", False)
    except Exception as exc:  # noqa: BLE001 - the driver's own errors: one line
        return Check("database", f"{url}: unreachable ({type(exc).__name__}: "
                     f"{first_line(str(exc))})", False)
    head = migrate.head_revision()
    if current != head:
        return Check("database", f"{url}: at {current or 'no revision'}, code needs {head}: "
                     "run `robustlab db upgrade`", False)
    return Check("database", f"{url}: migrations current ({head})", True)


def broker_and_worker(settings: Settings) -> tuple[Check, Check]:
    from service.queue.app import BrokerUnavailable, queue_consumers  # Celery

    try:
        workers = queue_consumers(settings.default_queue, settings=settings)
    except BrokerUnavailable as exc:
        return (Check("broker", first_line(str(exc)), False),
                Check("worker", "not asked (no broker)", False))
    broker = Check("broker", f"{settings.broker_url.split('@')[-1]}: answers", True)
    if not workers:
        return broker, Check("worker", f"none consumes {settings.default_queue!r} (start one: "
                             f"`robustlab worker --queues {settings.default_queue}`)", False)
    return broker, Check("worker", f"{len(workers)} on {settings.default_queue!r}: "
                         + ", ".join(workers), True)


def devices() -> tuple[Check, bool]:
    """(the devices torch sees, whether CUDA is one of them)."""
    import torch  # seconds: doctor is the one command that needs to know

    parts = []
    cuda = torch.cuda.is_available()
    if cuda:
        names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        parts.append(f"CUDA {torch.version.cuda}: {', '.join(names)}")
    else:
        parts.append(f"no CUDA (torch {torch.__version__}, built for CUDA "
                     f"{torch.version.cuda or 'none'})")
    if torch.backends.mps.is_available():
        parts.append("MPS")
    parts.append(f"CPU: {os.cpu_count()} cores, torch uses {torch.get_num_threads()} threads")
    return Check("devices", "; ".join(parts), True), cuda


def datasets(settings: Settings) -> Check:
    present = [name for name, info in DATASETS.items() if info.files
               and all((settings.data_dir / info.root_name / f).is_file() for f in info.files)]
    where = settings.data_dir.resolve()
    if not present:
        return Check("datasets", f"none under {where} (`robustlab data fetch mnist`)", True)
    return Check("datasets", f"{', '.join(present)} under {where}", True)


def artifacts(settings: Settings) -> Check:
    directory = settings.artifact_dir
    probe = directory if directory.exists() else Path(".")
    free = shutil.disk_usage(probe).free
    ok = free > 1 << 30
    return Check("artifacts", f"{directory.resolve()}: {free / (1 << 30):.1f} GiB free"
                 + ("" if ok else " (less than 1 GiB)"), ok)


def dashboard_auth(settings: Settings) -> Check:
    if settings.oidc_server_metadata_url and settings.oidc_client_id:
        members = len(settings.dashboard_members)
        return Check("dashboard", f"OIDC login ({members} member entries, "
                     f"{len(settings.dashboard_viewers)} viewer entries)", True)
    if settings.dashboard_allow_unauthenticated:
        return Check("dashboard", "no login, any address (ROBUSTLAB_DASHBOARD_ALLOW_"
                     "UNAUTHENTICATED)", True)
    return Check("dashboard", "no login: serves 127.0.0.1 only (docs/security.md for OIDC)",
                 True)


@click.command()
@click.option("--require", default="", metavar="broker,worker,cuda",
              help="Also fail (exit 1) when one of these is missing.")
def doctor(require: str) -> None:
    """Check this machine and deployment: database, broker, workers, devices, data, disk."""
    wanted = [item.strip() for item in require.split(",") if item.strip()]
    unknown = [item for item in wanted if item not in REQUIREMENTS]
    if unknown:
        raise click.BadParameter(f"unknown {', '.join(unknown)}; choose from "
                                 f"{', '.join(REQUIREMENTS)}", param_hint="--require")
    settings = get_settings()
    checks = [database(settings), *broker_and_worker(settings)]
    device, cuda = devices()
    checks += [device, datasets(settings), artifacts(settings), dashboard_auth(settings)]
    table = Table(header_style="bold", show_lines=False)
    for column in ("", "check", "found"):
        table.add_column(column)
    for check in checks:
        table.add_row("[green]ok[/green]" if check.ok else "[yellow]--[/yellow]", check.name,
                      check.found)
    out.print(table)
    failed = _failed(checks, wanted, cuda)
    if failed:
        out.print(f"[red]not ready:[/red] {', '.join(failed)}")
        raise SystemExit(EXIT_UNHEALTHY)


def _failed(checks: Sequence[Check], wanted: Sequence[str], cuda: bool) -> list[str]:
    by_name = {check.name: check for check in checks}
    failed = [] if by_name["database"].ok else ["database"]
    failed += [name for name in ("broker", "worker") if name in wanted and not by_name[name].ok]
    if "cuda" in wanted and not cuda:
        failed.append("cuda")
    return failed


COMMANDS: list[click.Command] = [doctor]
