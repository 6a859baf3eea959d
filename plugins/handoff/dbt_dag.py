"""The dbt stage of the daily DAG, rendered by astronomer-cosmos: the seeds and staging views in one task
(``dbt_staging``: one ``dbt build`` of that thin layer, tests included), then one Airflow task per intermediate
model and mart (run + its tests, ``TestBehavior.BUILD``), so a failing model or test is visible, retried and stops
what depends on it.

Rendering uses Cosmos's manifest load mode: the DAG parses from ``dbt_project/target/manifest.json`` (made by
``dbt parse``, which ``make install`` and ``handoff run`` do) with no database and no dbt subprocess at parse
time. Execution is in-process (``InvocationMode.DBT_RUNNER``): no Python start-up per model.
The profile comes from the ``handoff_warehouse_transformer`` Airflow connection, so the password never lands in a
file or in dbt's artifacts.

``HANDOFF_DBT_EXECUTION_MODE=watcher`` (in the environment of ``handoff airflow up``, which every service and task
inherits) renders the group in Cosmos's watcher mode instead: one producer task runs ONE ``dbt build`` of the group
(``--select`` its layers, ``--exclude tag:definition_lab``) and pushes each node's result to XCom; a deferrable sensor
per model and per model's tests (``TestBehavior.AFTER_EACH``; the triggerer polls) reports it. It needs the scheduler
and a triggerer; ``dbt_staging`` stays a task of its own. Env, global flags, DBT_RUNNER and the callbacks reach the
producer as they reach the local tasks. A failing model fails its sensor (dbt skips what depends on it, and the
producer reports those as failed); on a sensor's retry, once the producer has ended, Cosmos runs that one model (or
its tests) itself; a retry of the producer skips and leaves every sensor to do so. Measured through the scheduler on
the demo sample (README "Known gaps"): the dbt stage took 162 s against 209 s in the default mode and 43 s for one
plain ``dbt build``: faster, but each sensor is still an Airflow task process.
"""

from __future__ import annotations

import gc
import importlib
import inspect
import os

from handoff import settings

MANIFEST = settings.DBT_PROJECT_DIR / "target" / "manifest.json"


def dbt_interval_env_template() -> dict[str, str]:
    """The run's data interval for dbt (macros/incremental.sql), as Airflow templates rendered per run. Passed as
    environment, not dbt vars: changed vars make every run's first dbt call re-parse the whole project."""
    return {
        "HANDOFF_DATA_INTERVAL_START": "{{ data_interval_start.isoformat() }}",
        "HANDOFF_DATA_INTERVAL_END": "{{ data_interval_end.isoformat() }}",
    }


def execution_mode() -> str:
    """``local`` (default: one in-process dbt call per model, its tests included) or ``watcher`` (experimental in
    Cosmos: one ``dbt build`` feeding per-model sensor tasks; needs the scheduler and a triggerer, ``handoff airflow
    up``; ``make test-watcher`` runs a day with it)."""
    return os.environ.get("HANDOFF_DBT_EXECUTION_MODE", "local")


# The thin first layer (seeds: the funnel definition; staging: typed views over raw) builds in ONE dbt call with
# its tests: a task per view would cost ~1 s of scheduling each for sub-second work. Every intermediate model and
# mart keeps its own task (run + tests), where the time and the failures are.
STAGING_SELECT = "resource_type:seed path:models/staging"
# The per-model group's layers, as the watcher mode selects them (dbt_build_group).
WATCHER_SELECT = ["path:models/intermediate", "path:models/marts"]


# Every dbt task: no manifest.json / run_results.json written into the task's throw-away copy of the project (dbt
# spends ~0.3 s per call serialising the manifest; nothing reads them: Cosmos deletes the copy). The partial-parse
# file, which the next task's parse starts from, is written all the same.
DBT_GLOBAL_FLAGS = ["--no-write-json"]

# Every dbt call of a daily run in the default mode leaves the unit tests out: their inputs are fixed rows in YAML,
# so a day's data cannot change their result (dbt Labs advises running them in development and CI only). `make test`
# runs them (tests/dbt builds the project with them); at tier M they were 17 nodes, about 3 s of a one-day build.
DBT_CMD_FLAGS = ["--exclude-resource-type", "unit_test"]


# What a dbt task's process imports beyond what the scheduler has: the task runner, Cosmos's local operator, dbt's
# CLI and build task, the Postgres adapter. A process that forks task processes (the LocalExecutor's scheduler or
# ``handoff run --parallel``, a Celery worker) imports them once, before it forks (preload_task_modules): each task
# process then starts with them. Measured on the demo sample, ``handoff run --parallel 2``: imports were 48% of
# the run's sampled CPU (dbt's CLI alone 30%), about 2 s per task (README, "Known gaps").
TASK_MODULES = (
    "airflow.sdk.execution_time.task_runner",
    "cosmos.operators.local",
    "cosmos.dbt.runner",
    "dbt.cli.main",
    "dbt.task.build",
    "dbt.adapters.postgres",
)


def preload_task_modules() -> None:
    """Import TASK_MODULES into this process (a no-op for those already imported), and fill two caches every dbt call
    fills the first time in a process: the JSON schemas dbt validates the project, its flags and the profile
    against, and ``inspect``'s map of module files. dbt's adapter asks ``inspect.stack()`` for each of its ~26
    behaviour flags' default source, evaluated even when unused (``dbt_common.behavior_flags``); the first call in a
    process maps every imported module's file, about 0.1 s, the later ones reuse the map."""
    for name in TASK_MODULES:
        importlib.import_module(name)
    from dbt.adapters.postgres import PostgresCredentials  # noqa: PLC0415
    from dbt.contracts.project import PackageConfig, Project, ProjectFlags  # noqa: PLC0415

    for contract in (Project, ProjectFlags, PackageConfig, PostgresCredentials):
        contract.json_schema()
    inspect.getmodule(inspect.currentframe())


def freeze_heap(context=None) -> None:
    """``on_execute_callback`` of every dbt task: move the objects the task process already holds (Airflow, dbt,
    the DAG: ~280,000) into the garbage collector's permanent generation (``gc.freeze``), so that collections
    during and after the dbt call scan only what that call allocates. Cosmos ends every dbt call with a full
    ``gc.collect()`` (its fix for dbt adapters' leaked semaphores); over the whole heap that cost 0.2 s in a fresh
    task process and about 0.7 s per task in ``handoff run``'s single in-process run, as long as the dbt call
    itself. Objects frozen are only those alive before the task starts; what the task allocates is collected as
    before."""
    gc.freeze()


def _profile():
    from cosmos import ProfileConfig  # noqa: PLC0415
    from cosmos.profiles import PostgresUserPasswordProfileMapping  # noqa: PLC0415

    return ProfileConfig(
        profile_name="handoff",
        target_name="airflow",
        profile_mapping=PostgresUserPasswordProfileMapping(
            conn_id=settings.CONN_TRANSFORMER, profile_args={"schema": "staging", "threads": 2}
        ),
    )


def dbt_staging_task(task_id: str = "dbt_staging"):
    """Seeds and staging views with their tests, one `dbt build` (tests spanning later layers wait for those)."""
    from cosmos.constants import InvocationMode  # noqa: PLC0415
    from cosmos.operators.local import DbtBuildLocalOperator  # noqa: PLC0415

    return DbtBuildLocalOperator(
        task_id=task_id,
        project_dir=settings.DBT_PROJECT_DIR,
        profile_config=_profile(),
        select=STAGING_SELECT,
        indirect_selection="cautious",
        invocation_mode=InvocationMode.DBT_RUNNER,
        install_deps=False,
        retries=1,
        env=dbt_interval_env_template(),
        dbt_cmd_global_flags=DBT_GLOBAL_FLAGS,
        dbt_cmd_flags=DBT_CMD_FLAGS,
        on_execute_callback=freeze_heap,
    )


def dbt_build_group(group_id: str = "dbt_build"):
    from cosmos import (  # noqa: PLC0415
        DbtTaskGroup,
        ExecutionConfig,
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

    watcher = execution_mode() == "watcher"
    return DbtTaskGroup(
        group_id=group_id,
        project_config=ProjectConfig(
            dbt_project_path=settings.DBT_PROJECT_DIR,
            manifest_path=MANIFEST,
            install_dbt_deps=False,
        ),
        profile_config=_profile(),
        execution_config=ExecutionConfig(
            execution_mode=ExecutionMode(execution_mode()),
            invocation_mode=InvocationMode.DBT_RUNNER,
            # a model's task runs only the tests whose every parent it has built ...
            test_indirect_selection=TestIndirectSelection.CAUTIOUS,
        ),
        render_config=RenderConfig(
            load_method=LoadMode.DBT_MANIFEST,
            # dbt_staging builds the seeds and staging views, before this group; the definition lab's mart is built
            # by a backtest only. The watcher's producer runs `dbt build` with these same select/exclude: it selects
            # the group's layers instead of excluding the staging one, because an --exclude of the staging views
            # also drops (eager indirect selection) the tests spanning a staging view and a model of the group.
            **({"select": WATCHER_SELECT, "exclude": ["tag:definition_lab"]} if watcher else
               {"exclude": [*STAGING_SELECT.split(), "tag:definition_lab"]}),
            # watcher: the producer's single `dbt build` runs every test; per-model test sensors report them.
            test_behavior=TestBehavior.AFTER_EACH if watcher else TestBehavior.BUILD,
            # ... and tests spanning several models (relationships) get their own task after all of them. Not in
            # watcher mode: the producer reports a test's result only within its models' aggregated test status,
            # so a sensor of its own would find nothing to watch (and pass on "no information about the node").
            should_detach_multiple_parents_tests=not watcher,
            emit_datasets=False,
        ),
        operator_args={"install_deps": False, "retries": 1, "env": dbt_interval_env_template(),
                       "dbt_cmd_global_flags": DBT_GLOBAL_FLAGS, "on_execute_callback": freeze_heap,
                       # (the watcher's producer as it was measured: its sensors report what it ran)
                       **({} if watcher else {"dbt_cmd_flags": DBT_CMD_FLAGS})},
    )
