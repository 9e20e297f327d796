"""The dashboard's launcher: the Streamlit command line it runs, and when it refuses to start."""

from __future__ import annotations

import stat
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from dashboard.auth import AuthConfig, write_secrets
from dashboard.launch import (
    ACCENT,
    APP,
    LOOPBACK,
    LaunchRefused,
    check_exposure,
    streamlit_command,
)
from service.settings import Settings

OIDC: dict[str, Any] = {"oidc_server_metadata_url": "http://127.0.0.1:1/.well-known/openid-configuration",
        "oidc_client_id": "robustlab", "oidc_client_secret": "s3cret",
        "oidc_cookie_secret": "c" * 40, "dashboard_members": ["@lab.example"]}


def test_command_serves_the_app_on_loopback_headless_without_usage_statistics() -> None:
    command = streamlit_command(8777)
    assert command[:5] == [sys.executable, "-m", "streamlit", "run", str(APP)]
    flags = dict(zip(command[5::2], command[6::2], strict=True))
    assert flags == {"--server.port": "8777", "--server.address": LOOPBACK,
                     "--server.headless": "true", "--browser.gatherUsageStats": "false",
                     "--client.toolbarMode": "viewer", "--server.maxUploadSize": "1",
                     "--server.enableXsrfProtection": "true", "--client.showErrorDetails": "full",
                     "--theme.primaryColor": ACCENT}
    assert APP.is_file()
    visible = streamlit_command(headless=False)
    assert visible[visible.index("--server.headless") + 1] == "false"


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.7", "robustlab.lab.example"])
def test_a_non_loopback_host_without_login_is_refused(host: str) -> None:
    with pytest.raises(LaunchRefused, match="ROBUSTLAB_OIDC_SERVER_METADATA_URL") as refused:
        check_exposure(host, 8501, Settings.model_validate({}))
    assert "\n" not in str(refused.value)
    assert check_exposure(host, 8501, Settings.model_validate({"dashboard_allow_unauthenticated": True})) is None


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost"])
def test_loopback_needs_no_login(host: str) -> None:
    assert check_exposure(host, 8501, Settings.model_validate({})) is None


@pytest.mark.parametrize(("changes", "message"), [
    ({"oidc_client_secret": None}, "ROBUSTLAB_OIDC_CLIENT_SECRET"),
    ({"oidc_cookie_secret": "short"}, "at least 32"),
    ({"dashboard_members": []}, "allow-list"),
])
def test_half_configured_login_is_refused(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(LaunchRefused, match=message):
        check_exposure("0.0.0.0", 8501, Settings.model_validate(OIDC | changes))


def test_the_secrets_file_is_private_and_holds_the_auth_section(tmp_path: Path) -> None:
    config = check_exposure("0.0.0.0", 8600, Settings.model_validate(OIDC))
    assert isinstance(config, AuthConfig)
    assert config.redirect_uri == "http://localhost:8600/oauth2callback"
    path = write_secrets(config, tmp_path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    auth = tomllib.loads(path.read_text())["auth"]
    assert auth == {"redirect_uri": config.redirect_uri, "cookie_secret": "c" * 40,
                    "client_id": "robustlab", "client_secret": "s3cret",
                    "server_metadata_url": OIDC["oidc_server_metadata_url"]}
    command = streamlit_command(8600, host="0.0.0.0", secrets_file=path, exposed=True)
    assert command[command.index("--secrets.files") + 1] == str(path)
    assert command[command.index("--client.showErrorDetails") + 1] == "type"
    behind_tls = check_exposure("0.0.0.0", 8600, Settings.model_validate(
        OIDC | {"dashboard_public_url": "https://robustlab.lab.example/"}))
    assert behind_tls is not None
    assert behind_tls.redirect_uri == "https://robustlab.lab.example/oauth2callback"


def test_cli_refuses_an_exposed_host_with_exit_2() -> None:
    done = subprocess.run([sys.executable, "-m", "service.cli", "dashboard", "--host",
                           "0.0.0.0", "--port", "8599"], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "ROBUSTLAB_OIDC_CLIENT_ID" in lines[0]


def test_compose_publishes_the_dashboard_on_the_hosts_loopback_only() -> None:
    compose = yaml.safe_load((Path(__file__).resolve().parents[2] / "docker-compose.yml")
                             .read_text())
    dashboard = compose["services"]["dashboard"]
    assert dashboard["ports"] == ["127.0.0.1:8501:8501"]
    assert dashboard["environment"]["ROBUSTLAB_DATABASE_URL"].startswith("postgresql://")
