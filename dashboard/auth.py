"""Who may use the dashboard: Streamlit's OIDC login, an allow-list, and two roles.

- **No OIDC configured**: the dashboard serves 127.0.0.1 only (``dashboard/launch.py`` refuses
  any other address unless ``ROBUSTLAB_DASHBOARD_ALLOW_UNAUTHENTICATED``). Whoever reaches it
  is the local user, a member; runs it starts are recorded as the OS user.
- **OIDC configured** (``ROBUSTLAB_OIDC_*``): every page needs ``st.login``. The e-mail the
  provider vouches for must be on the allow-list: ``ROBUSTLAB_DASHBOARD_MEMBERS`` may browse,
  submit, cancel and use the SQL box; ``ROBUSTLAB_DASHBOARD_VIEWERS`` may browse only.
  A provider that says ``email_verified: false`` is not believed.

The gate is here, not in the pages: ``app.py`` builds the navigation with ``navigation``, so a
page above a user's role is replaced by a refusal under the same URL and its script never runs,
and pages added later are covered by declaring their role in ``app.py``'s one list. Controls
inside pages every role sees (cancel, the SQL box) ask ``may(Role.MEMBER)``.

The pure half (settings -> ``AuthConfig``, the secrets file, ``role_for``) has no Streamlit
in it, so the launcher and tests use it directly.
"""

from __future__ import annotations

import getpass
import ipaddress
import json
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from service.settings import Settings, get_settings


class Role(StrEnum):
    VIEWER = "viewer"
    MEMBER = "member"


RANK = {Role.VIEWER: 0, Role.MEMBER: 1}


class AuthMisconfigured(ValueError):
    """The OIDC settings are incomplete or contradict each other; the message names what to set."""


# --------------------------------------------------------------------------- settings -> config


@dataclass(frozen=True)
class AuthConfig:
    """What Streamlit's ``[auth]`` section needs, resolved from robustlab's settings."""

    server_metadata_url: str
    client_id: str
    client_secret: str
    cookie_secret: str
    redirect_uri: str


OIDC_SETTINGS = {
    "server_metadata_url": "ROBUSTLAB_OIDC_SERVER_METADATA_URL",
    "client_id": "ROBUSTLAB_OIDC_CLIENT_ID",
    "client_secret": "ROBUSTLAB_OIDC_CLIENT_SECRET (or _FILE)",
    "cookie_secret": "ROBUSTLAB_OIDC_COOKIE_SECRET (or _FILE)",
}
MIN_COOKIE_SECRET = 32


def auth_config(settings: Settings, port: int) -> AuthConfig | None:
    """The OIDC configuration, ``None`` when none of it is set; ``AuthMisconfigured`` if half is."""
    values = {
        "server_metadata_url": settings.oidc_server_metadata_url,
        "client_id": settings.oidc_client_id,
        "client_secret": (settings.oidc_client_secret.get_secret_value()
                          if settings.oidc_client_secret else None),
        "cookie_secret": (settings.oidc_cookie_secret.get_secret_value()
                          if settings.oidc_cookie_secret else None),
    }
    missing = [OIDC_SETTINGS[key] for key, value in values.items() if not value]
    if len(missing) == len(values):
        return None
    if missing:
        raise AuthMisconfigured("OIDC login is half configured: set " + ", ".join(missing))
    if len(values["cookie_secret"] or "") < MIN_COOKIE_SECRET:
        raise AuthMisconfigured(f"ROBUSTLAB_OIDC_COOKIE_SECRET must be at least "
                                f"{MIN_COOKIE_SECRET} characters (openssl rand -hex 32)")
    if not settings.dashboard_members and not settings.dashboard_viewers:
        raise AuthMisconfigured("OIDC login needs an allow-list: set ROBUSTLAB_DASHBOARD_MEMBERS "
                                "and/or ROBUSTLAB_DASHBOARD_VIEWERS (e-mails or @domains)")
    public = (settings.dashboard_public_url or f"http://localhost:{port}").rstrip("/")
    return AuthConfig(redirect_uri=f"{public}/oauth2callback",
                      **{key: str(value) for key, value in values.items()})


def secrets_toml(config: AuthConfig) -> str:
    """Streamlit's secrets file with only the ``[auth]`` section (TOML basic strings)."""
    lines = ["[auth]"] + [f"{key} = {json.dumps(getattr(config, key))}"
                          for key in ("redirect_uri", "cookie_secret", "client_id",
                                      "client_secret", "server_metadata_url")]
    return "\n".join(lines) + "\n"


def write_secrets(config: AuthConfig, directory: Path | None = None) -> Path:
    """Write the secrets file, mode 0600, in a fresh private directory outside the repository.

    The launcher removes the directory when Streamlit exits; the file exists only because
    Streamlit reads ``[auth]`` from a secrets file and nowhere else.
    """
    private = Path(tempfile.mkdtemp(prefix="robustlab-dashboard-", dir=directory))  # mode 0700
    path = private / "secrets.toml"
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(secrets_toml(config))
    return path


def is_loopback(host: str) -> bool:
    """``127.0.0.1``, ``::1``, ``localhost``: addresses only this machine can reach."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# --------------------------------------------------------------------------- the allow-list


def _matches(email: str, entry: str) -> bool:
    entry = entry.strip().lower()
    if not entry:
        return False
    if "@" in entry.lstrip("@"):
        return email == entry
    return email.endswith("@" + entry.lstrip("@"))


def role_for(email: str | None, settings: Settings, *,
             email_verified: bool | None = None) -> Role | None:
    """The role of a logged-in e-mail: members first, then viewers; ``None``: not allowed.

    An entry is an address (``alice@lab.example``) or a domain (``@lab.example``, which does
    not include its subdomains). Comparison ignores case.
    """
    if not email or email_verified is False:
        return None
    address = email.strip().lower()
    if any(_matches(address, entry) for entry in settings.dashboard_members):
        return Role.MEMBER
    if any(_matches(address, entry) for entry in settings.dashboard_viewers):
        return Role.VIEWER
    return None


# --------------------------------------------------------------------------- Streamlit side


@dataclass(frozen=True)
class User:
    """Who is looking at the page: ``email`` is ``None`` when nobody logged in (no OIDC)."""

    email: str | None
    role: Role

    @property
    def submitter(self) -> str:
        """What runs started from this page record as ``submitted_by``."""
        return self.email or get_settings().submitted_by or getpass.getuser()


def oidc_enabled(settings: Settings | None = None) -> bool:
    settings = settings or get_settings()
    return bool(settings.oidc_server_metadata_url and settings.oidc_client_id)


def gate() -> User:
    """Log the visitor in and find their role, or show why not and stop the script."""
    import streamlit as st  # the pure half above is imported by the launcher without Streamlit

    settings = get_settings()
    if not oidc_enabled(settings):
        return User(email=None, role=Role.MEMBER)
    if not st.user.is_logged_in:
        st.title("robustlab")
        st.write("Log in with the lab's identity provider to see the dashboard.")
        if st.button("Log in", type="primary", key="auth_login"):
            st.login()
        st.stop()
    email = _claim(st.user, "email")
    verified = _claim(st.user, "email_verified")
    role = role_for(email, settings, email_verified=_as_bool(verified))
    if role is None:
        st.title("robustlab")
        st.error(f"{email or 'This account'} is not on the dashboard's allow-list.", icon="🚫")
        st.caption("Ask the lab's robustlab admin to add you to ROBUSTLAB_DASHBOARD_MEMBERS "
                   "or ROBUSTLAB_DASHBOARD_VIEWERS.")
        if st.button("Log out", key="auth_logout_refused"):
            st.logout()
        st.stop()
    user = User(email=email, role=role)
    st.session_state["robustlab_user"] = user
    return user


def current_user() -> User:
    """The user ``gate`` let in on this rerun (pages run after ``app.py``'s gate)."""
    import streamlit as st

    if not oidc_enabled():
        return User(email=None, role=Role.MEMBER)
    user = st.session_state.get("robustlab_user")
    return user if isinstance(user, User) else User(email=None, role=Role.VIEWER)


def may(needed: Role) -> bool:
    """Whether the current user's role reaches ``needed`` (for controls inside a page)."""
    return RANK[current_user().role] >= RANK[needed]


def sidebar(user: User) -> None:
    import streamlit as st

    if user.email is None:
        return
    st.sidebar.caption(f"Logged in as {user.email} ({user.role})")
    if st.sidebar.button("Log out", key="auth_logout"):
        st.logout()


@dataclass(frozen=True)
class PageSpec:
    """One dashboard page and the least role that may open it."""

    path: Path
    title: str
    icon: str
    role: Role = Role.VIEWER
    default: bool = False


def navigation(pages: Sequence[PageSpec], user: User) -> list[Any]:
    """``st.Page`` objects for ``st.navigation``: a page above the user's role is a refusal.

    The refusal keeps the page's title and URL, so a link to /submit says "members only"
    instead of quietly showing another page, and the page's own script never runs.
    """
    import streamlit as st

    built = []
    for page in pages:
        if RANK[user.role] >= RANK[page.role]:
            built.append(st.Page(page.path, title=page.title, icon=page.icon,
                                 default=page.default))
        else:
            built.append(st.Page(_refusal(page, user), title=page.title, icon=page.icon,
                                 url_path=page.path.stem, default=page.default))
    return built


def _refusal(page: PageSpec, user: User) -> Callable[[], None]:
    def refused() -> None:
        import streamlit as st

        st.title(page.title)
        st.error(f"The {page.title} page is for {page.role}s; {user.email} is a {user.role}.",
                 icon="🚫")

    refused.__name__ = f"refused_{page.path.stem}"
    return refused


def _claim(user: Any, name: str) -> Any:
    try:
        return user.get(name)
    except (AttributeError, KeyError):
        return None


def _as_bool(value: Any) -> bool | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value.strip().lower() == "true"
    return bool(value)
