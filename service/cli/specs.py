"""Spec commands: ``validate`` and ``schema``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import click

from contract.specs.loading import SpecError, load_spec_file
from contract.specs.schema import SCHEMA_PATH, render_schema, write_schema
from contract.specs.sweep import expand
from service.cli.common import EXIT_BAD_INPUT, err, first_line, open_store, out, overrides_option
from service.preflight import names_runs, preflight
from service.store.repository import StoreError


@click.command()
@click.argument("specs", nargs=-1, required=True, type=click.Path(dir_okay=False))
@overrides_option
@click.option("--here", is_flag=True,
              help="Also require what this machine must have: the files and folders the spec "
                   "names, its run ids in this database, its device (warnings become errors).")
def validate(specs: Sequence[str], overrides: Sequence[str], here: bool) -> None:
    """Check spec files; print every problem as FILE:LINE PATH: MESSAGE (exit 2 if any).

    \b
    Without --here, what this machine lacks (a dataset root or checkpoint file that does not
    exist, a run id this database does not know, a device it does not have) is a warning
    line: the spec may be meant for another machine. With --here, each is an error.
    """
    bad = 0
    for path in specs:
        try:
            loaded = load_spec_file(path, overrides)
        except SpecError as exc:
            bad += 1
            for problem in exc.problems:
                err.print(str(problem), markup=False)
            continue
        findings = _machine_findings(loaded.spec, path)
        for finding in findings:
            err.print(f"{path}: {'error' if here else 'warning'}: {finding}", markup=False)
        if here and findings:
            bad += 1
            continue
        cells = len(expand(loaded.spec))
        out.print(f"{path}: ok ({loaded.spec.kind}, {cells} run{'s' if cells != 1 else ''})")
    if bad:
        raise SystemExit(EXIT_BAD_INPUT)


def _machine_findings(spec: Any, path: str) -> list[Any]:
    """What this machine lacks for ``spec`` (the database is opened only for run ids)."""
    store = None
    if names_runs(spec):
        try:
            store = open_store()
        except StoreError as exc:
            err.print(f"{path}: warning: run ids not checked: {first_line(str(exc))}",
                      markup=False)
    try:
        return preflight(spec, store)
    finally:
        if store is not None:
            store.close()


@click.command()
@click.option("--write", "write", is_flag=True, help="Write specs/schema.json.")
@click.option("--check", "check", is_flag=True, help="Exit 1 if specs/schema.json is stale.")
def schema(write: bool, check: bool) -> None:
    """Print the JSON Schema of the spec language (for editors), or write/check specs/schema.json."""
    text = render_schema()
    if write:
        out.print(f"wrote {write_schema()}")
    elif check:
        current = SCHEMA_PATH.read_text() if SCHEMA_PATH.exists() else ""
        if current != text:
            err.print(f"{SCHEMA_PATH} is stale: run `robustlab schema --write`")
            raise SystemExit(1)
        out.print(f"{SCHEMA_PATH} is current")
    else:
        click.echo(text, nl=False)


COMMANDS: list[click.Command] = [validate, schema]
