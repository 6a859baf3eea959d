"""Where things live and how they are configured: paths, ports and environment variables, in one place."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]

DEFAULT_WAREHOUSE_PORT = 55432
DEFAULT_CRM_PORT = 58080
WAREHOUSE_DB = "handoff"

# Airflow connection ids: the DAG reads every credential from these (never from code).
CONN_LOADER = "handoff_warehouse_loader"
CONN_TRANSFORMER = "handoff_warehouse_transformer"
CONN_PUSHER = "handoff_warehouse_pusher"
CONN_CRM = "handoff_crm"


@dataclass(frozen=True)
class Paths:
    """The project's git-ignored local state (``.local/`` or ``$HANDOFF_HOME``)."""

    home: Path

    @property
    def warehouse(self) -> Path:
        return self.home / "warehouse"

    @property
    def airflow_home(self) -> Path:
        return self.home / "airflow"

    @property
    def sample(self) -> Path:
        return self.home / "sample"

    @property
    def landing(self) -> Path:
        return self.home / "landing"

    @property
    def crm_state(self) -> Path:
        return self.home / "crm" / "sandbox.sqlite3"


def paths() -> Paths:
    home = os.environ.get("HANDOFF_HOME")
    return Paths(Path(home).resolve() if home else REPO_ROOT / ".local")


def warehouse_port() -> int:
    raw = os.environ.get("HANDOFF_WAREHOUSE_PORT", str(DEFAULT_WAREHOUSE_PORT))
    try:
        port = int(raw)
    except ValueError:
        raise SystemExit(f"HANDOFF_WAREHOUSE_PORT must be a port number, got {raw!r}") from None
    if not 1 <= port <= 65535:
        raise SystemExit(f"HANDOFF_WAREHOUSE_PORT must be between 1 and 65535, got {port}")
    return port


def external_warehouse_url() -> str | None:
    """``HANDOFF_WAREHOUSE_URL`` points everything at another Postgres instead of the local cluster."""
    return os.environ.get("HANDOFF_WAREHOUSE_URL") or None


FUNNEL_DEFINITION = REPO_ROOT / "config" / "funnel.yml"
DBT_PROJECT_DIR = REPO_ROOT / "dbt_project"
DAGS_DIR = REPO_ROOT / "dags"
PLUGINS_DIR = REPO_ROOT / "plugins"
