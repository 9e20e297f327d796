"""The README runs as written: every `robustlab ...` command it shows exists, with its flags.

Each command line of the README's shell blocks is parsed with the CLI's own click objects:
the command path must name real (sub)commands and every `--flag` must be one of that
command's options. The cheap ones (validate, schema, runs, results, metrics on no runs) are
run for real in a fresh directory with the README's own arguments.
"""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path

import click
import pytest

from service.cli.app import main
from tests.service.test_cli import robustlab

REPO = Path(__file__).resolve().parents[2]
CHEAP = {"validate", "schema", "runs", "results"}
PLACEHOLDER = re.compile(r"\b(?:RUN|SPEC|RUN_ID|DIR|FILE|MODEL_ID|NAME|ADDR|HOST:PORT)\b")


def readme_commands() -> list[list[str]]:
    """Every `robustlab` command line of the README's shell blocks, as arguments."""
    found, fence = [], None
    for raw in (REPO / "README.md").read_text().splitlines():
        line = raw.strip()
        if line.startswith("```"):
            fence = None if fence is not None else (line[3:].strip() or "text")
            continue
        if fence not in ("bash", "sh", "console", "text"):
            continue
        for part in line.removeprefix("$ ").split(" #", 1)[0].split("&&"):
            part = part.strip()
            if part.startswith("robustlab "):
                found.append(shlex.split(part)[1:])
    return found


def resolve(args: list[str]) -> tuple[click.Command, list[str]]:
    """The click command the arguments name, and the options given to it."""
    command: click.Command = main
    rest = list(args)
    while isinstance(command, click.Group) and rest and not rest[0].startswith("-"):
        name = rest.pop(0)
        sub = command.get_command(click.Context(command), name)
        if sub is None:
            if command is main:
                raise AssertionError(f"robustlab has no command {name!r} ({args})")
            rest.insert(0, name)  # an argument of the group (runs RUN)
            break
        command = sub
    return command, [a.split("=", 1)[0] for a in rest if a.startswith("--")]


COMMANDS = readme_commands()


def test_the_readme_shows_commands() -> None:
    assert len(COMMANDS) >= 20
    assert {args[0] for args in COMMANDS} >= {"run", "validate", "results", "runs", "compare",
                                              "dashboard", "report", "doctor"}


@pytest.mark.parametrize("args", COMMANDS, ids=[" ".join(a)[:60] for a in COMMANDS])
def test_every_readme_command_and_flag_exists(args: list[str]) -> None:
    command, flags = resolve(args)
    known = {opt for param in command.params for opt in getattr(param, "opts", [])}
    known |= {opt for param in command.params for opt in getattr(param, "secondary_opts", [])}
    known |= {"--help"}
    unknown = [flag for flag in flags if flag not in known]
    assert not unknown, f"robustlab {' '.join(args)}: no option {unknown} on {command.name}"


def test_the_cheap_readme_commands_run(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROBUSTLAB_")}
    robustlab("db", "upgrade", cwd=tmp_path, env=env, check=True)
    ran = 0
    for args in COMMANDS:
        if args[0] not in CHEAP or any(PLACEHOLDER.search(a) for a in args):
            continue
        if any(a.endswith(".yaml") and not a.startswith("specs/") for a in args):
            continue  # a file an earlier README block asks the reader to write
        if args[0] == "schema" and "--write" in args:
            continue
        absolute = [str(REPO / a) if a.startswith("specs/") else a for a in args]
        expanded = [str(p) for a in absolute for p in (sorted(Path("/").glob(a[1:]))
                    if "*" in a else [Path(a)])] if any("*" in a for a in absolute) else absolute
        done = robustlab(*expanded, cwd=tmp_path, env=env)
        assert done.returncode == 0, f"robustlab {' '.join(args)}:\n{done.stderr}"
        ran += 1
    assert ran >= 4
