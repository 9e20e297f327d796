"""The ``robustlab`` group and the one explicit list of its commands.

Each command group lives in its own module and exports ``COMMANDS``; this module imports them
all and adds them to ``main``. Nothing imports this module but ``service.cli`` itself, so the
dependency runs one way: app -> command modules -> common.
"""

from __future__ import annotations

import logging

import click

from service.cli import (
    compare,
    dashboard,
    data,
    database,
    doctor,
    export,
    metrics,
    queue,
    report,
    results,
    running,
    runs,
    schedule,
)
from service.cli import specs as spec_commands


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="robustlab")
@click.option("-v", "--verbose", is_flag=True, help="Log what happens (INFO level).")
def main(verbose: bool) -> None:
    """robustlab: reproduce and extend "Robustness may be at odds with accuracy" from YAML specs.

    \b
    Typical session:
      robustlab db upgrade                       # create / migrate the results database
      robustlab validate specs/paper/*.yaml      # check specs
      robustlab run specs/quickstart.yaml        # run in-process, print results
      robustlab results --format csv             # query what is in the database

    Settings come from the environment: ROBUSTLAB_DATABASE_URL (default sqlite:///robustlab.db),
    ROBUSTLAB_ARTIFACT_DIR, ROBUSTLAB_RUNS_DIR, ROBUSTLAB_DATA_DIR, ROBUSTLAB_BROKER_URL.
    """
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")


COMMAND_GROUPS = (
    spec_commands,  # validate, schema
    running,        # run, resume
    runs,           # runs, runs show
    results,        # results
    metrics,        # metrics
    compare,        # compare
    queue,          # submit, worker, cancel
    schedule,       # schedule add|list|remove, beat
    report,         # report
    doctor,         # doctor
    database,       # db upgrade|downgrade|current
    data,           # data fetch
    dashboard,      # dashboard
    export,         # export mlflow
)
"""Every command of ``robustlab``, by module: the one list to extend."""

for _group in COMMAND_GROUPS:
    for _command in _group.COMMANDS:
        main.add_command(_command)
