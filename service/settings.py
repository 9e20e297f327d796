"""Deployment settings, read from the environment (``ROBUSTLAB_*``); never part of a spec."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ROBUSTLAB_", extra="ignore")

    database_url: str = Field(
        "sqlite:///robustlab.db", description="SQLAlchemy URL: SQLite file or PostgreSQL."
    )
    db_retry_attempts: int = Field(
        5, ge=1, description="Tries of a store operation while the database is unreachable."
    )
    db_retry_base_delay_s: float = Field(
        0.5, gt=0, description="First wait between those tries; it doubles after each."
    )
    artifact_dir: Path = Field(Path("artifacts"), description="Where run artifacts are written.")
    runs_dir: Path = Field(Path("runs"), description="Per-run scratch and checkpoint directories.")
    data_dir: Path = Field(Path("data"), description="Root of the datasets (`robustlab data fetch`).")
    broker_url: str = Field("redis://127.0.0.1:6379/0", description="Celery broker (Redis).")
    default_queue: str = Field("gpu", description="Queue that `robustlab submit` uses by default.")
    visibility_timeout: float = Field(
        86_400, gt=0, description="Seconds before a task a worker took but never acknowledged "
        "(the worker died) is delivered again; must exceed the longest run (Redis broker)."
    )
    worker_max_tasks_per_child: int = Field(
        1, ge=1, description="Runs a worker's child process executes before it is replaced "
        "(1: every run in a fresh process, so no memory or global state leaks between runs)."
    )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
