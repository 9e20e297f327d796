"""Spec commands: ``validate`` and ``schema``."""

from __future__ import annotations

from collections.abc import Sequence

import click

from contract.specs.loading import SpecError, load_spec_file
from contract.specs.schema import SCHEMA_PATH, render_schema, write_schema
from contract.specs.sweep import expand
from service.cli.common import EXIT_BAD_INPUT, err, out, overrides_option


@click.command()
@click.argument("specs", nargs=-1, required=True, type=click.Path(dir_okay=False))
@overrides_option
def validate(specs: Sequence[str], overrides: Sequence[str]) -> None:
    """Check spec files; print every problem as FILE:LINE PATH: MESSAGE (exit 2 if any)."""
    bad = 0
    for path in specs:
        try:
            loaded = load_spec_file(path, overrides)
        except SpecError as exc:
            bad += 1
            for problem in exc.problems:
                err.print(str(problem), markup=False)
            continue
        cells = len(expand(loaded.spec))
        out.print(f"{path}: ok ({loaded.spec.kind}, {cells} run{'s' if cells != 1 else ''})")
    if bad:
        raise SystemExit(EXIT_BAD_INPUT)


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
