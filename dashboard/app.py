"""The robustlab dashboard: a multipage Streamlit app over the results store and artifacts.

Start it with ``robustlab dashboard`` (see ``dashboard/launch.py``). It reads the database
named by ``ROBUSTLAB_DASHBOARD_DATABASE_URL`` (default ``ROBUSTLAB_DATABASE_URL``) and the
files under ``ROBUSTLAB_ARTIFACT_DIR``.

``PAGES`` is the one list of pages, each with the least role that may open it; ``auth.gate``
logs the visitor in (when OIDC is configured) and ``auth.navigation`` turns a page above the
visitor's role into a refusal under the same URL, so a new page is covered by adding it here.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from dashboard import auth, components
from dashboard.auth import PageSpec, Role
from service.store import queries

# Not ``pages/``: Streamlit treats a ``pages/`` folder beside the entry script as a legacy
# multipage app and would serve its files without running this script (no ``st.navigation``).
VIEWS = Path(__file__).parent / "views"

PAGES = [
    PageSpec(VIEWS / "runs.py", "Runs", ":material/list_alt:", default=True),
    PageSpec(VIEWS / "submit.py", "Submit", ":material/upload_file:", role=Role.MEMBER),
    PageSpec(VIEWS / "tradeoffs.py", "Trade-offs", ":material/show_chart:"),
    PageSpec(VIEWS / "galleries.py", "Galleries", ":material/photo_library:"),
    PageSpec(VIEWS / "results.py", "Results", ":material/table_view:"),
    PageSpec(VIEWS / "compare.py", "Compare", ":material/compare_arrows:"),
]

st.set_page_config(page_title="robustlab", layout="wide")
user = auth.gate()
navigation = st.navigation(auth.navigation(PAGES, user))
auth.sidebar(user)
st.sidebar.caption(f"Database: {queries.safe_url(components.database_url())}")
st.sidebar.caption(f"Artifacts: {components.artifact_dir().resolve()}")
navigation.run()
