"""handoff_daily — the marketing→sales hand-off, one data interval (one UTC day) per run.

extract/load (CRM + analytics files) → dbt source freshness → dbt: seeds and staging views in one task, then one
task per intermediate model and mart (tests included) → push new SQLs to the CRM, and beside it write the day's
conversion report (``$HANDOFF_HOME/reports/handoff-<day>.html``). A failed dbt test fails its task, and neither the
push nor the report (all_success) runs.

This file is configuration only: schedule, order, retries, timeouts. Every task body calls into
``plugins/handoff`` (``handoff.pipeline``); nothing here touches a database or the network at import time.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

from airflow.sdk import dag, task
from airflow.timetables.interval import CronDataIntervalTimetable
from handoff.dbt_dag import dbt_build_group, dbt_staging_task

DEFAULT_ARGS = {
    "owner": "handoff",
    "retries": 2,
    # HANDOFF_RETRY_DELAY_SECONDS: the first retry's delay (README "Configuration"; tests use 1 s)
    "retry_delay": timedelta(seconds=int(os.environ.get("HANDOFF_RETRY_DELAY_SECONDS", "120"))),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=20),
    "execution_timeout": timedelta(minutes=60),
}


@dag(
    dag_id="handoff_daily",
    # A data-interval timetable, deliberately: the run for day D covers [D 00:00, D+1 00:00) UTC and starts
    # once that day is over. (A cron/preset schedule in Airflow 3 gives a zero-length interval.)
    schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"),
    # UTC, stated: a naive start_date would be read in the deployment's default_timezone.
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["handoff", "marketing", "sales", "dbt", "reverse-etl"],
    doc_md=__doc__,
    params={"push_dry_run": False},
)
def handoff_daily():
    @task(multiple_outputs=True, execution_timeout=timedelta(minutes=30))
    def extract_load_crm(data_interval_end=None) -> dict:
        from handoff import pipeline

        return pipeline.extract_load_crm(data_interval_end)

    @task(multiple_outputs=True, execution_timeout=timedelta(minutes=30))
    def extract_load_analytics(data_interval_start=None, data_interval_end=None) -> dict:
        from handoff import pipeline

        return pipeline.extract_load_analytics(data_interval_start, data_interval_end)

    @task(multiple_outputs=True, execution_timeout=timedelta(minutes=10))
    def dbt_source_freshness(data_interval_end=None) -> dict:
        from handoff import pipeline

        return pipeline.dbt_source_freshness(data_interval_end)

    @task(multiple_outputs=True, execution_timeout=timedelta(minutes=45), retries=3)
    def push_sqls(data_interval_end=None, params=None, run_id=None) -> dict:
        from handoff import pipeline

        return pipeline.push_sqls(data_interval_end, run_id=run_id, dry_run=bool((params or {}).get("push_dry_run")))

    @task(multiple_outputs=True, execution_timeout=timedelta(minutes=10))
    def write_report(data_interval_start=None) -> dict:
        from handoff import pipeline

        return pipeline.write_report(data_interval_start)

    loaded = [extract_load_crm(), extract_load_analytics()]
    freshness = dbt_source_freshness()
    staging = dbt_staging_task()
    transform = dbt_build_group()
    loaded >> freshness >> staging >> transform >> [push_sqls(), write_report()]


handoff_daily()
