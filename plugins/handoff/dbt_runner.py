"""Run dbt outside Airflow (CLI, tests, an analyst's shell) as the transformer role, against the warehouse target."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from handoff import settings

PROJECT = settings.DBT_PROJECT_DIR
MANIFEST = PROJECT / "target" / "manifest.json"


def dbt_env(role: str = "transformer") -> dict[str, str]:
    from handoff import warehouse  # noqa: PLC0415

    tgt = warehouse.target()
    cred = tgt.credentials[role]
    return {
        "HANDOFF_DBT_HOST": tgt.host,
        "HANDOFF_DBT_PORT": str(tgt.port),
        "HANDOFF_DBT_DBNAME": tgt.dbname,
        "HANDOFF_DBT_USER": cred["user"],
        "HANDOFF_DBT_PASSWORD": cred["password"],
        "DBT_PROFILES_DIR": str(PROJECT),
        "DBT_PROJECT_DIR": str(PROJECT),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    }


def interval_env(start: datetime | None, end: datetime | None) -> dict[str, str]:
    """The run's data interval for dbt (macros/incremental.sql): environment variables, not --vars, because a
    change of --vars makes dbt re-parse the whole project on every run."""
    return {"HANDOFF_DATA_INTERVAL_START": start.isoformat() if start else "",
            "HANDOFF_DATA_INTERVAL_END": end.isoformat() if end else ""}


def dbt_executable() -> str:
    exe = Path(sys.executable).with_name("dbt")
    return str(exe) if exe.exists() else "dbt"


def run(args: Sequence[str], *, quiet: bool = False, check: bool = True, needs_db: bool = True,
        env: dict[str, str] | None = None, project_dir: Path = PROJECT) -> subprocess.CompletedProcess:
    """``dbt <args>`` in the project folder (or a copy of it: ``project_dir``); raises with dbt's own output when it
    fails."""
    full_env = {**os.environ, **(dbt_env() if needs_db else _offline_env()), **(env or {}),
                "DBT_PROJECT_DIR": str(project_dir), "DBT_PROFILES_DIR": str(project_dir)}
    res = subprocess.run([dbt_executable(), *args], cwd=project_dir, env=full_env, text=True,
                         capture_output=quiet, check=False)
    if check and res.returncode != 0:
        detail = (res.stdout or "")[-4000:] + (res.stderr or "")[-2000:] if quiet else ""
        raise RuntimeError(f"dbt {' '.join(args)} failed (exit {res.returncode})\n{detail}")
    return res


def _offline_env() -> dict[str, str]:
    # `dbt parse` needs a profile but no connection: any password will do
    return {"DBT_PROFILES_DIR": str(PROJECT), "HANDOFF_DBT_PASSWORD": os.environ.get("HANDOFF_DBT_PASSWORD", "unused"),
            "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}


def manifest_is_fresh() -> bool:
    """True when target/manifest.json is newer than every file of the project."""
    if not MANIFEST.exists():
        return False
    built = MANIFEST.stat().st_mtime
    for folder in ("models", "macros", "seeds", "tests", "snapshots"):
        for path in (PROJECT / folder).rglob("*"):
            if path.is_file() and path.stat().st_mtime > built:
                return False
    return (PROJECT / "dbt_project.yml").stat().st_mtime <= built
