"""The robustlab dashboard: a multipage Streamlit app over the results store and artifacts.

Start it with ``robustlab dashboard`` (see ``dashboard/launch.py``). It reads the database
named by ``ROBUSTLAB_DATABASE_URL`` and the files under ``ROBUSTLAB_ARTIFACT_DIR``.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from dashboard import components
from service.store import queries

# Not ``pages/``: Streamlit treats a ``pages/`` folder beside the entry script as a legacy
# multipage app and would serve its files without running this script (no ``st.navigation``).
PAGES = Path(__file__).parent / "views"

st.set_page_config(page_title="robustlab", layout="wide")
navigation = st.navigation([
    st.Page(PAGES / "runs.py", title="Runs", icon=":material/list_alt:", default=True),
    st.Page(PAGES / "submit.py", title="Submit", icon=":material/upload_file:"),
    st.Page(PAGES / "tradeoffs.py", title="Trade-offs", icon=":material/show_chart:"),
    st.Page(PAGES / "galleries.py", title="Galleries", icon=":material/photo_library:"),
    st.Page(PAGES / "results.py", title="Results", icon=":material/table_view:"),
])
st.sidebar.caption(f"Database: {queries.safe_url(components.database_url())}")
st.sidebar.caption(f"Artifacts: {components.artifact_dir().resolve()}")
navigation.run()
