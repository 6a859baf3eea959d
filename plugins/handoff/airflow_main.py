"""``python -m handoff.airflow_main <airflow arguments>``: Airflow's own command line, in a process that first imports
what a dbt task imports (``handoff.dbt_dag.preload_task_modules``). ``handoff airflow up`` starts the processes that
fork task processes this way (the scheduler, whose LocalExecutor forks its workers and they the tasks; Celery
workers), so every task process inherits dbt, its Postgres adapter and Cosmos instead of importing them again."""

from __future__ import annotations


def main() -> None:
    from handoff.dbt_dag import preload_task_modules  # noqa: PLC0415

    preload_task_modules()
    from airflow.__main__ import main as airflow_main  # noqa: PLC0415

    airflow_main()


if __name__ == "__main__":
    main()
