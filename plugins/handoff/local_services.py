"""Local stand-ins started for a run when no real system is configured: the CRM sandbox.

A real deployment sets the ``handoff_crm`` Airflow connection (``AIRFLOW_CONN_HANDOFF_CRM``: host = the CRM's
API base URL, password = the private-app token) and nothing here starts. Without it, ``handoff run`` starts the
sandbox in-process on a free loopback port, seeded from the sample, and points the connection at it.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator

from handoff import airflow_env, settings

CRM_ENV = "AIRFLOW_CONN_" + settings.CONN_CRM.upper()


def sandbox_token() -> str:
    path = settings.paths().crm_state.with_name("token")
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write("sandbox-" + secrets.token_urlsafe(24))
    return path.read_text().strip()


def ensure_sandbox_state(log=print) -> None:
    """Seed the sandbox's state from the sample's crm/ folder the first time (or after a new sample)."""
    from handoff import crm_sandbox  # noqa: PLC0415

    state = settings.paths().crm_state
    sample_crm = settings.paths().sample / "crm"
    marker = state.with_name("seeded-from")
    manifest = settings.paths().sample / "manifest.json"
    stamp = manifest.read_text() if manifest.exists() else ""
    if state.exists() and marker.exists() and marker.read_text() == stamp:
        crm_sandbox.create_handoff_properties(state)  # a state seeded before the sandbox knew properties lacks them
        return
    if not sample_crm.exists():
        raise SystemExit("handoff: error: no CRM configured and no sample to seed the sandbox with: run "
                         "`handoff sample` first, or set AIRFLOW_CONN_HANDOFF_CRM to a real CRM")
    log(f"seeding the CRM sandbox from {sample_crm}")
    state.parent.mkdir(parents=True, exist_ok=True)
    crm_sandbox.init_from(state, sample_crm)
    marker.write_text(stamp)


def needs_sandbox() -> bool:
    """True when the CRM is read by API and no real CRM is configured (no ``AIRFLOW_CONN_HANDOFF_CRM``)."""
    from handoff import sources  # noqa: PLC0415

    return not os.environ.get(CRM_ENV) and sources.load().crm.mode == "api"


@contextlib.contextmanager
def crm_for_run(log=print) -> Iterator[None]:
    """Make ``handoff_crm`` resolvable for the run: the user's connection, or a sandbox started here."""
    if not needs_sandbox():
        yield
        return
    from handoff import crm_sandbox  # noqa: PLC0415

    ensure_sandbox_state(log)
    handle = crm_sandbox.start_sandbox(settings.paths().crm_state, port=0, token=sandbox_token())
    os.environ[CRM_ENV] = airflow_env.crm_connection(handle.url, sandbox_token())
    log(f"CRM sandbox serving {handle.url} (no AIRFLOW_CONN_HANDOFF_CRM set)")
    try:
        yield
    finally:
        os.environ.pop(CRM_ENV, None)
        handle.stop()


@contextlib.contextmanager
def crm_client_for_cli(log=print):
    """A CRM client for CLI commands, from the same connection the DAG uses."""
    airflow_env.apply()
    with crm_for_run(log=log):
        from handoff.pipeline import crm_client  # noqa: PLC0415

        with crm_client() as client:
            yield client
