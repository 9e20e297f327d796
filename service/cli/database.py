"""Database commands: ``db upgrade | downgrade | current``."""

from __future__ import annotations

import click

from service.cli.common import friendly_errors, out
from service.settings import get_settings
from service.store import migrate
from service.store.session import safe_url


@click.group()
def db() -> None:
    """Create and migrate the results database (ROBUSTLAB_DATABASE_URL)."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True)
@friendly_errors
def db_upgrade(revision: str) -> None:
    """Apply migrations up to REVISION (creates the database when it does not exist)."""
    url = get_settings().database_url
    migrate.upgrade(url, revision)
    out.print(f"database at revision {migrate.current_revision(url)} ({safe_url(url)})")


@db.command("downgrade")
@click.argument("revision")
@friendly_errors
def db_downgrade(revision: str) -> None:
    """Revert migrations down to REVISION ('base' removes every table)."""
    url = get_settings().database_url
    migrate.downgrade(url, revision)
    out.print(f"database at revision {migrate.current_revision(url) or 'base'}")


@db.command("current")
@friendly_errors
def db_current() -> None:
    """Print the database's revision and the code's."""
    url = get_settings().database_url
    out.print(f"database: {migrate.current_revision(url) or 'base (empty)'}  "
              f"code: {migrate.head_revision()}  ({safe_url(url)})")


COMMANDS: list[click.Command] = [db]
