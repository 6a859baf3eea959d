"""The dbt stage of the daily DAG, rendered by astronomer-cosmos: one Airflow task per dbt model (run + its
tests, ``TestBehavior.BUILD``), so a failing model or test is visible, retried and stops what depends on it.

Rendering uses Cosmos's manifest load mode: the DAG parses from ``dbt_project/target/manifest.json`` (made by
``dbt parse``, which ``make install`` and ``handoff run`` do) with no database and no dbt subprocess at parse
time. Execution is in-process (``InvocationMode.DBT_RUNNER``): no Python start-up per model.
The profile comes from the ``handoff_warehouse_transformer`` Airflow connection, so the password never lands in a
file or in dbt's artifacts.
"""

from __future__ import annotations

import os

from handoff import settings

MANIFEST = settings.DBT_PROJECT_DIR / "target" / "manifest.json"


def dbt_vars_template() -> dict[str, str]:
    """dbt vars for a run, as Airflow templates rendered per data interval."""
    return {
        "data_interval_start": "{{ data_interval_start.isoformat() }}",
        "data_interval_end": "{{ data_interval_end.isoformat() }}",
    }


def execution_mode() -> str:
    """``local`` (default: one in-process dbt call per model, its tests included) or ``watcher`` (experimental in
    Cosmos: one ``dbt build`` feeding per-model sensor tasks; needs an executor and triggerer, so not `dag.test`)."""
    return os.environ.get("HANDOFF_DBT_EXECUTION_MODE", "local")


def dbt_build_group(group_id: str = "dbt_build"):
    from cosmos import (  # noqa: PLC0415
        DbtTaskGroup,
        ExecutionConfig,
        ProfileConfig,
        ProjectConfig,
        RenderConfig,
    )
    from cosmos.constants import (  # noqa: PLC0415
        ExecutionMode,
        InvocationMode,
        LoadMode,
        TestBehavior,
        TestIndirectSelection,
    )
    from cosmos.profiles import PostgresUserPasswordProfileMapping  # noqa: PLC0415

    watcher = execution_mode() == "watcher"
    profile = ProfileConfig(
        profile_name="handoff",
        target_name="airflow",
        profile_mapping=PostgresUserPasswordProfileMapping(
            conn_id=settings.CONN_TRANSFORMER, profile_args={"schema": "staging", "threads": 2}
        ),
    )
    return DbtTaskGroup(
        group_id=group_id,
        project_config=ProjectConfig(
            dbt_project_path=settings.DBT_PROJECT_DIR,
            manifest_path=MANIFEST,
            install_dbt_deps=False,
            dbt_vars=dbt_vars_template(),
        ),
        profile_config=profile,
        execution_config=ExecutionConfig(
            execution_mode=ExecutionMode(execution_mode()),
            invocation_mode=InvocationMode.DBT_RUNNER,
            # a model's task runs only the tests whose every parent it has built ...
            test_indirect_selection=TestIndirectSelection.CAUTIOUS,
        ),
        render_config=RenderConfig(
            load_method=LoadMode.DBT_MANIFEST,
            # watcher: the producer's single `dbt build` runs every test; per-model tasks report them.
            test_behavior=TestBehavior.AFTER_EACH if watcher else TestBehavior.BUILD,
            # ... and tests spanning several models (relationships) get their own task after all of them
            should_detach_multiple_parents_tests=True,
            emit_datasets=False,
        ),
        operator_args={"install_deps": False, "retries": 1},
    )
