"""What every ``robustlab`` command shares: the consoles, exit codes, one-line errors, options.

Command modules import from here and nowhere else in ``service.cli``; ``service.cli.app``
imports the command modules. The dependency runs one way, so there is no import cycle.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

import click
from rich.console import Console

from contract.limits import SettingsError
from contract.specs.loading import SpecError
from service.store.entities import RunInfo
from service.store.repository import Store
from service.store.session import StoreError

F = TypeVar("F", bound=Callable[..., Any])

# A pipe or a log file gets wide tables rather than rich's default of 80 columns.
out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True, highlight=False, soft_wrap=True)

EXIT_RUN_FAILED = 1
EXIT_BAD_INPUT = 2

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


class UserError(click.ClickException):
    """A problem the user can fix; shown as one line, exit code 2."""

    exit_code = EXIT_BAD_INPUT

    def show(self, file: Any = None) -> None:
        err.print(f"[red]error:[/red] {self.format_message()}", markup=True, highlight=False)


def friendly_errors(fn: F) -> F:
    """Turn the project's expected exceptions into one-line errors (exit 2).

    Set ``ROBUSTLAB_DEBUG=1`` to see the traceback of a store or file error instead.
    """

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except SpecError as exc:
            for problem in exc.problems:
                err.print(str(problem), markup=False)
            raise SystemExit(EXIT_BAD_INPUT) from None
        except (StoreError, FileNotFoundError, SettingsError) as exc:
            if os.environ.get("ROBUSTLAB_DEBUG"):
                raise
            raise UserError(first_line(str(exc)) or type(exc).__name__) from None

    return wrapper  # type: ignore[return-value]


def open_store() -> Store:
    """The results store of the current settings (refuses an out-of-date schema)."""
    return Store.from_settings()


def overrides_option(fn: F) -> F:
    """``--set PATH=VALUE`` (repeatable), for every command that loads a spec."""
    return click.option(
        "--set", "overrides", multiple=True, metavar="PATH=VALUE",
        help="Override a spec field; VALUE is parsed as YAML (e.g. --set eps=[0,0.1]).",
    )(fn)


def first_line(text: str | None) -> str:
    """The first non-empty line of ``text`` (an error's message, not its traceback)."""
    for line in (text or "").strip().splitlines():
        if line.strip():
            return line.strip()
    return ""


def params_text(run: RunInfo) -> str:
    """A run's sweep cell as ``k=v k=v``."""
    return " ".join(f"{key}={value}" for key, value in run.params.items())


def label(run: RunInfo, status: str) -> str:
    """``RUN STATUS k=v ...``: a run and its sweep cell on one line."""
    return " ".join([run.id, status, *(f"{k}={v}" for k, v in run.params.items())])
