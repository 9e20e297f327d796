"""The dashboard's launcher: the Streamlit command line it runs (the browser tests run it)."""

from __future__ import annotations

import sys

from dashboard.launch import APP, streamlit_command


def test_command_serves_the_app_headless_without_usage_statistics() -> None:
    command = streamlit_command(8777, extra_args=["--server.address", "127.0.0.1"])
    assert command[:5] == [sys.executable, "-m", "streamlit", "run", str(APP)]
    flags = dict(zip(command[5::2], command[6::2], strict=True))
    assert flags == {"--server.port": "8777", "--server.headless": "true",
                     "--browser.gatherUsageStats": "false", "--server.address": "127.0.0.1"}
    assert APP.is_file()
    visible = streamlit_command(headless=False)
    assert visible[visible.index("--server.headless") + 1] == "false"
