"""``handoff dashboard``: the Streamlit page on 127.0.0.1, reading the marts as ``handoff_bi_reader``.

The role's connection string reaches the page through its environment (``HANDOFF_DASHBOARD_CONNINFO``), never
its command line or a log. Streamlit's usage statistics are off; it serves until stopped (Ctrl-C).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from handoff.dashboard.app_env import CONNINFO_ENV

APP = Path(__file__).with_name("app.py")
DEFAULT_PORT = 8501


def command(port: int) -> list[str]:
    """The command line that serves the page: no secret in it."""
    return [sys.executable, "-m", "streamlit", "run", str(APP), "--server.address", "127.0.0.1",
            "--server.port", str(port), "--server.headless", "true", "--browser.gatherUsageStats", "false",
            "--global.developmentMode", "false", "--server.fileWatcherType", "none",
            "--client.toolbarMode", "viewer", "--theme.base", "light"]


def environment(conninfo: str) -> dict[str, str]:
    return {**os.environ, CONNINFO_ENV: conninfo}


def url(port: int) -> str:
    return f"http://127.0.0.1:{port}"


def serve(conninfo: str, port: int) -> None:
    """Replace this process with Streamlit serving the page (returns only by raising)."""
    os.execve(sys.executable, command(port), environment(conninfo))
