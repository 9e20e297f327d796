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
    artifact_dir: Path = Field(Path("artifacts"), description="Where run artifacts are written.")
    runs_dir: Path = Field(Path("runs"), description="Per-run scratch and checkpoint directories.")
    data_dir: Path = Field(Path("data"), description="Root of the datasets (`robustlab data fetch`).")
    broker_url: str = Field("redis://127.0.0.1:6379/0", description="Celery broker (Redis).")
    default_queue: str = Field("gpu", description="Queue that `robustlab submit` uses by default.")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
