"""`handoff crm-properties` creates the properties the push writes in an account that lacks them, once, through
the same `handoff_crm` connection the DAG uses; a CRM that refuses is one `handoff: error:` line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from handoff.airflow_env import crm_connection
from handoff.crm_sandbox import load_objects, start_sandbox
from sandbox_support import TOKEN, contact

REPO = Path(__file__).resolve().parents[3]
WANTED = ["contacts.handoff_score", "contacts.handoff_reasons", "contacts.handoff_sql_at", "tasks.handoff_dedupe_key"]


@pytest.fixture
def bare_account(tmp_path):
    """A sandbox account with one contact and none of handoff's own properties."""
    state = tmp_path / "crm" / "sandbox.sqlite3"
    load_objects(state, "contacts", [contact(1)])
    handle = start_sandbox(state, token=TOKEN, rate_limit=None)
    yield handle
    handle.stop()


def _cli(tmp_path: Path, url: str, token: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_CONN_", "AIRFLOW__", "HANDOFF_"))}
    env.update({"HANDOFF_HOME": str(tmp_path / "home"), "PYTHONPATH": str(REPO / "plugins"),
                "AIRFLOW_CONN_HANDOFF_CRM": crm_connection(url, token)})
    return subprocess.run([sys.executable, "-m", "handoff.cli", "crm-properties"], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=120)


def test_creates_the_missing_properties_once(tmp_path, bare_account):
    first = _cli(tmp_path, bare_account.url, TOKEN)
    assert first.returncode == 0, first.stderr[-2000:]
    assert first.stdout.splitlines() == [f"{name}: created" for name in WANTED]
    second = _cli(tmp_path, bare_account.url, TOKEN)
    assert second.returncode == 0, second.stderr[-2000:]
    assert second.stdout.splitlines() == [f"{name}: already there" for name in WANTED]


def test_a_crm_that_refuses_is_one_error_line_without_the_token(tmp_path, bare_account):
    res = _cli(tmp_path, bare_account.url, "pat-wrong-token-0000")
    assert res.returncode != 0
    assert "handoff: error: the CRM refused to read or create a property" in res.stderr
    assert "Traceback" not in res.stderr
    assert "pat-wrong-token-0000" not in res.stderr + res.stdout
