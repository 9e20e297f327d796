"""Deployment settings, read from the environment (``ROBUSTLAB_*``); never part of a spec."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from contract.limits import SpecLimits, read_settings


class Settings(SpecLimits):
    """Every deployment setting, the spec limits (``contract.limits``) included."""

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
    db_outage_s: float = Field(
        60, gt=0, description="Seconds a running run rides out an unreachable database, its "
        "records held in memory and written when it answers again; past this the run stops "
        "and is marked failed with the reason as soon as the database answers."
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

    # Dashboard access (issue 13; docs/security.md). Without OIDC the dashboard serves only
    # 127.0.0.1; `robustlab dashboard --host ADDR` on any other address needs the four OIDC
    # settings and an allow-list. Secrets come from the environment or from files outside the
    # repository (the *_FILE variants, as Docker secrets are mounted).
    oidc_server_metadata_url: str | None = Field(
        None, description="The OIDC provider's discovery document "
        "(https://idp.example/.well-known/openid-configuration)."
    )
    oidc_client_id: str | None = Field(None, description="The dashboard's OIDC client id.")
    oidc_client_secret: SecretStr | None = Field(None, description="Its OIDC client secret.")
    oidc_client_secret_file: Path | None = Field(
        None, description="A file holding the client secret (instead of ROBUSTLAB_OIDC_CLIENT_SECRET)."
    )
    oidc_cookie_secret: SecretStr | None = Field(
        None, description="Signs the login cookie: a long random string (openssl rand -hex 32)."
    )
    oidc_cookie_secret_file: Path | None = Field(
        None, description="A file holding the cookie secret (instead of ROBUSTLAB_OIDC_COOKIE_SECRET)."
    )
    dashboard_public_url: str | None = Field(
        None, description="The dashboard's address as browsers see it (https://robustlab.lab.example "
        "behind TLS); the OIDC redirect URI is this plus /oauth2callback. Default: "
        "http://localhost:PORT."
    )
    dashboard_members: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Who may browse, submit, cancel and use the SQL box: "
        "comma-separated e-mail addresses and @domains (alice@lab.example,@lab.example)."
    )
    dashboard_viewers: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Who may only browse: e-mail addresses and @domains "
        "(a members entry wins over a viewers entry)."
    )
    dashboard_allow_unauthenticated: bool = Field(
        False, description="Serve a non-loopback --host without login. Only where the network "
        "keeps strangers out (docker-compose publishes the port on the host's 127.0.0.1 only)."
    )
    dashboard_database_url: str | None = Field(
        None, description="The database login the dashboard reads with (pages and SQL box); "
        "default ROBUSTLAB_DATABASE_URL. Cancelling and submitting still use the latter."
    )
    sql_max_rows: int = Field(
        100_000, ge=1, description="Most rows the SQL box returns, whatever limit a user asks for."
    )
    sql_max_bytes: int = Field(
        32 << 20, ge=1024, description="Most bytes of values the SQL box returns (32 MiB); a "
        "larger result stops with an error instead of filling the dashboard's memory."
    )
    sql_sqlite_heap_bytes: int = Field(
        512 << 20, ge=1 << 20, description="SQLite's hard heap limit in a dashboard process "
        "(all its SQLite connections together), set by the SQL box."
    )
    submitted_by: str | None = Field(
        None, description="Who `run`/`submit` record as the submitter; default the OS user "
        "(the dashboard passes the OIDC e-mail this way to the runs it starts)."
    )

    @field_validator("dashboard_members", "dashboard_viewers", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        """``a@x.org, @y.org`` from the environment; a list from Python."""
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @model_validator(mode="after")
    def _read_secret_files(self) -> Settings:
        """Fill a secret from its *_file setting, so the secret itself need not be in the environment."""
        for name in ("oidc_client_secret", "oidc_cookie_secret"):
            path = getattr(self, f"{name}_file")
            if path is not None and getattr(self, name) is None:
                setattr(self, name, SecretStr(Path(path).read_text().strip()))
        return self


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The deployment's settings; ``SettingsError`` (one line) when a variable is unreadable."""
    return read_settings(Settings)
