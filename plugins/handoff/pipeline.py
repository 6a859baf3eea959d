"""The bodies of the daily DAG's tasks: resolve credentials from Airflow connections, call the plain-Python
modules that do the work, return a small summary (counts only: it becomes an XCom, so never a secret)."""

from __future__ import annotations

from datetime import UTC, datetime

from handoff import settings


def utc(value: datetime) -> datetime:
    """Airflow hands tasks pendulum datetimes; the plain-Python modules get stdlib UTC datetimes.

    (pendulum 3's ``astimezone(datetime.timezone.utc)`` returns a naive value, which must not leak further.)
    """
    return datetime.fromtimestamp(value.timestamp(), tz=UTC)


def conninfo(conn_id: str) -> str:
    """A libpq connection string from an Airflow connection (env var, secrets backend or metadata DB)."""
    import psycopg  # noqa: PLC0415
    from airflow.sdk.bases.hook import BaseHook  # noqa: PLC0415

    conn = BaseHook.get_connection(conn_id)
    return psycopg.conninfo.make_conninfo(
        host=conn.host, port=conn.port or 5432, dbname=conn.schema, user=conn.login, password=conn.password,
        connect_timeout=10, application_name=f"handoff-{conn_id}",
    )


def crm_client():
    """The CRM client for the ``handoff_crm`` connection: host = API base URL, password = private-app token."""
    from airflow.sdk.bases.hook import BaseHook  # noqa: PLC0415

    from handoff.crm.client import CrmClient  # noqa: PLC0415

    conn = BaseHook.get_connection(settings.CONN_CRM)
    base = conn.host if "://" in (conn.host or "") else f"https://{conn.host}"
    if conn.port and f":{conn.port}" not in base:
        base = f"{base}:{conn.port}"
    return CrmClient(base, conn.password)


def extract_load_crm(interval_end: datetime) -> dict:
    from handoff import sources  # noqa: PLC0415

    cfg = sources.load()
    loader = conninfo(settings.CONN_LOADER)
    if cfg.crm.mode == "csv":
        from handoff.load.crm_csv import load_crm_csv  # noqa: PLC0415

        return load_crm_csv(loader, cfg.crm.csv_dir, cfg.crm.csv_mapping, interval_end=utc(interval_end),
                            **cfg.crm.csv_load_options())
    from handoff.extract.crm_api import sync_crm  # noqa: PLC0415

    with crm_client() as client:
        return sync_crm(loader, client, interval_end=utc(interval_end))


def extract_load_analytics(interval_start: datetime, interval_end: datetime) -> dict:
    from handoff import sources  # noqa: PLC0415
    from handoff.load.analytics import load_analytics_files  # noqa: PLC0415

    a = sources.load().analytics
    return load_analytics_files(conninfo(settings.CONN_LOADER), a.landing, utc(interval_start), utc(interval_end),
                                max_bad_share=a.max_bad_share, max_line_bytes=a.max_line_bytes,
                                max_field_bytes=a.max_field_bytes, max_future_skew_hours=a.max_future_skew_hours)


def dbt_env_from_airflow() -> dict[str, str]:
    from airflow.sdk.bases.hook import BaseHook  # noqa: PLC0415

    conn = BaseHook.get_connection(settings.CONN_TRANSFORMER)
    return {"HANDOFF_DBT_HOST": conn.host, "HANDOFF_DBT_PORT": str(conn.port or 5432),
            "HANDOFF_DBT_DBNAME": conn.schema, "HANDOFF_DBT_USER": conn.login, "HANDOFF_DBT_PASSWORD": conn.password}


def dbt_source_freshness(interval_end: datetime) -> dict:
    """``dbt source freshness`` before the build: a source that stopped arriving fails the run here."""
    from handoff import dbt_runner  # noqa: PLC0415

    res = dbt_runner.run(["source", "freshness"], quiet=True, check=False, needs_db=False,
                         env={**dbt_env_from_airflow(), **dbt_runner.interval_env(None, utc(interval_end))})
    if res.returncode != 0:
        raise RuntimeError("dbt source freshness failed: a source is stale or missing\n" + res.stdout[-4000:])
    return {"status": "fresh"}


def push_sqls(interval_end: datetime, *, run_id: str | None, dry_run: bool) -> dict:
    from handoff.push import push_queue  # noqa: PLC0415

    with crm_client() as client:
        return push_queue(conninfo(settings.CONN_PUSHER), client, run_id=run_id or "manual",
                          as_of=utc(interval_end), dry_run=dry_run)


def write_report(interval_start: datetime) -> dict:
    """The day's conversion report (``handoff report``) under ``$HANDOFF_HOME/reports/``: it runs the dashboard's
    queries, which read the marts only, through the transformer's connection (the run has no BI connection)."""
    import psycopg  # noqa: PLC0415

    from handoff.dashboard import report  # noqa: PLC0415

    day = utc(interval_start).date()
    out = settings.paths().home / "reports" / f"handoff-{day.isoformat()}.html"
    with psycopg.connect(conninfo(settings.CONN_TRANSFORMER)) as conn:
        report.write(conn, out, day)
    return {"report": str(out), "bytes": out.stat().st_size}
