"""Dashboard login end to end: a real OIDC provider, `robustlab dashboard`, headless Chromium.

The provider is PyPI's ``oidc-provider-mock`` (a real OpenID Connect server: discovery,
authorization code flow, signed ID tokens, end-session), started in this process. Its login
form takes any subject, whose e-mail claim is the subject itself. The dashboard is launched as
a user would launch it, with the OIDC settings in its environment; Streamlit's ``st.login``
does the rest. Also the allow-list's rules, without a browser.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from oidc_provider_mock import run_server_in_thread
from playwright.sync_api import Browser, Page

from dashboard.auth import Role, role_for
from service.settings import Settings
from tests.dashboard.conftest import REPO
from tests.dashboard.seed import Seeded
from tests.dashboard.serving import CHROMIUM, serving
from tests.dashboard.test_browser import TIMEOUT_MS, browser

__all__ = ["browser"]  # the module-scoped Chromium fixture, shared with test_browser

MEMBER = "member@lab.example"
VIEWER = "viewer@guests.example"
STRANGER = "stranger@elsewhere.example"


# --------------------------------------------------------------------------- the allow-list


@pytest.mark.parametrize(("email", "verified", "role"), [
    ("member@lab.example", None, Role.MEMBER),
    ("Member@LAB.example", True, Role.MEMBER),
    ("someone@lab.example", None, Role.VIEWER),        # the domain is a viewer entry
    ("boss@lab.example", None, Role.MEMBER),           # an address beats its domain
    ("member@lab.example", False, None),               # the provider did not verify it
    ("x@sub.lab.example", None, None),                 # a domain does not cover subdomains
    ("x@evil-lab.example", None, None),
    ("lab.example@evil.example", None, None),
    (None, None, None),
])
def test_role_for(email: str | None, verified: bool | None, role: Role | None) -> None:
    settings = Settings.model_validate({
        "dashboard_members": ["member@lab.example", "boss@lab.example"],
        "dashboard_viewers": ["@lab.example"]})
    assert role_for(email, settings, email_verified=verified) == role


def test_allow_lists_come_comma_separated_from_the_environment(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROBUSTLAB_DASHBOARD_MEMBERS", " a@lab.example, @lab.example ,")
    assert Settings.model_validate({}).dashboard_members == ["a@lab.example", "@lab.example"]


def test_secrets_may_come_from_files(tmp_path: Path) -> None:
    (tmp_path / "client").write_text("from-a-file\n")
    settings = Settings.model_validate({"oidc_client_secret_file": tmp_path / "client"})
    assert settings.oidc_client_secret is not None
    assert settings.oidc_client_secret.get_secret_value() == "from-a-file"


# --------------------------------------------------------------------------- the browser flow


@pytest.fixture(scope="module")
def provider() -> Iterator[str]:
    """The OIDC provider's base URL (http on localhost: Authlib needs to be told that is fine)."""
    with pytest.MonkeyPatch.context() as patch, run_server_in_thread(port=0) as server:
        patch.setenv("AUTHLIB_INSECURE_TRANSPORT", "1")
        yield f"http://localhost:{server.server_port}"


@pytest.fixture(scope="module")
def secured_dashboard(seeded: Seeded, provider: str,
                      tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`robustlab dashboard` with OIDC login configured; yields its base URL (localhost)."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium")
    workdir = tmp_path_factory.mktemp("secured")
    env = {
        "ROBUSTLAB_OIDC_SERVER_METADATA_URL": f"{provider}/.well-known/openid-configuration",
        "ROBUSTLAB_OIDC_CLIENT_ID": "robustlab-dashboard",
        "ROBUSTLAB_OIDC_CLIENT_SECRET": "not-checked-by-the-mock",
        "ROBUSTLAB_OIDC_COOKIE_SECRET": "a-cookie-secret-of-more-than-32-characters",
        "ROBUSTLAB_DASHBOARD_MEMBERS": MEMBER,
        "ROBUSTLAB_DASHBOARD_VIEWERS": "@guests.example",
        "AUTHLIB_INSECURE_TRANSPORT": "1",
        "TMPDIR": str(workdir),  # where the launcher writes Streamlit's secrets file
    }
    with serving(seeded, workdir, env=env, host="localhost") as base:
        (secrets,) = workdir.glob("robustlab-dashboard-*/secrets.toml")
        assert secrets.stat().st_mode & 0o777 == 0o600 and not secrets.is_relative_to(REPO)
        yield base
    assert not list(workdir.glob("robustlab-dashboard-*")), "the secrets file outlived it"


def _settled(page: Page) -> None:
    page.locator('[data-testid="stStatusWidget"]').wait_for(state="hidden")


def log_in(page: Page, base: str, email: str) -> None:
    """From a logged-out dashboard: Log in, type the subject at the provider, Authorize."""
    page.goto(base)
    page.get_by_role("button", name="Log in").click()
    page.locator('input[name="sub"]').fill(email)
    page.get_by_role("button", name="Authorize").click()
    page.wait_for_url(f"{base}/**")


def log_out(page: Page, base: str) -> None:
    """The sidebar's Log out, the provider's end-session page, back to the login prompt."""
    page.get_by_role("button", name="Log out").click()
    page.get_by_role("button", name="End session").click()
    page.goto(base)
    page.get_by_role("button", name="Log in").wait_for()


@pytest.mark.browser
def test_login_roles_and_logout_in_chromium(secured_dashboard: str, browser: Browser) -> None:
    base = secured_dashboard
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    try:
        page.goto(f"{base}/submit")  # nothing is shown before logging in, not even a title
        page.get_by_role("button", name="Log in").wait_for()
        assert page.get_by_role("heading", name="Submit").count() == 0

        log_in(page, base, VIEWER)
        page.get_by_role("heading", name="Runs", exact=True).wait_for()
        page.get_by_text(f"Logged in as {VIEWER} (viewer)").wait_for()
        page.goto(f"{base}/submit")
        page.get_by_text("The Submit page is for members").wait_for()
        _settled(page)
        assert page.locator(".spec-yaml").count() == 0
        assert page.get_by_role("button", name="Run locally").count() == 0
        page.goto(f"{base}/results")
        page.get_by_text("The SQL box is for members").wait_for()
        assert page.get_by_role("button", name="Run query").count() == 0
        log_out(page, base)

        log_in(page, base, MEMBER)
        page.get_by_text(f"Logged in as {MEMBER} (member)").wait_for()
        page.goto(f"{base}/submit")
        page.get_by_role("heading", name="Submit a spec").wait_for()
        page.locator(".spec-yaml").first.wait_for()
        page.get_by_role("button", name="Run locally").wait_for()
        assert page.get_by_text("is for members").count() == 0
        log_out(page, base)

        log_in(page, base, STRANGER)
        page.get_by_text(f"{STRANGER} is not on the dashboard's allow-list").wait_for()
        assert page.get_by_role("heading", name="Runs", exact=True).count() == 0
    finally:
        context.close()
