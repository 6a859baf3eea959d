"""Shared fixtures: the project's own local PostgreSQL (started if needed) with a throw-away test database."""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "plugins"))

from handoff import warehouse  # noqa: E402

# one database per test session (parallel sessions never drop each other's), dropped at the end
TEST_DB = os.environ.get("HANDOFF_TEST_DB", f"handoff_test_{os.getpid()}")


# long checks with their own make target, skipped unless their option is given: marker -> (option, what runs them)
OPT_IN = {"soak": ("--soak", "a soak trial: make test-soak runs it"),
          "airflow_services": ("--airflow-services", "real Airflow services, about 5 min: make test-airflow runs it"),
          "airflow_celery": ("--airflow-celery", "Airflow's CeleryExecutor against the LocalExecutor, many minutes: "
                                                 "make test-celery runs it"),
          "airflow_watcher": ("--airflow-watcher", "Cosmos's watcher mode through the scheduler against the local "
                                                   "mode, many minutes: make test-watcher runs it")}


def pytest_addoption(parser):
    parser.addoption("--soak", action="store_true", help="run the soak trials too (make test-soak)")
    parser.addoption("--airflow-services", action="store_true",
                     help="run the tests of `handoff airflow up` too (make test-airflow)")
    parser.addoption("--airflow-celery", action="store_true",
                     help="run the test of `handoff airflow up --executor celery` too (make test-celery)")
    parser.addoption("--airflow-watcher", action="store_true",
                     help="run the test of HANDOFF_DBT_EXECUTION_MODE=watcher through the scheduler too "
                          "(make test-watcher)")


def pytest_collection_modifyitems(config, items):
    for marker, (option, reason) in OPT_IN.items():
        if config.getoption(option):
            continue
        skip = pytest.mark.skip(reason=reason)
        for item in items:
            if marker in item.keywords:
                item.add_marker(skip)


@pytest.fixture(scope="session")
def wh_target():
    """A fresh database (``handoff_test``) on the warehouse, with schemas, tables and roles set up."""
    base = warehouse.target()
    if base.local:
        warehouse.LocalCluster().up(log=lambda *_: None)
    tgt = dataclasses.replace(base, dbname=TEST_DB)
    admin_db = "postgres" if base.local else base.dbname
    with psycopg.connect(tgt.conninfo("admin", dbname=admin_db), autocommit=True) as conn:
        conn.execute("select pg_terminate_backend(pid) from pg_stat_activity where datname = %s", [TEST_DB])
        conn.execute(sql.SQL("drop database if exists {}").format(sql.Identifier(TEST_DB)))
        conn.execute(warehouse.create_database(TEST_DB))
    warehouse.setup(dataclasses.replace(tgt, local=False), log=lambda *_: None)
    yield tgt
    with psycopg.connect(tgt.conninfo("admin", dbname=admin_db), autocommit=True) as conn:
        conn.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(TEST_DB)))


@pytest.fixture
def wh(wh_target: warehouse.Target):
    """The test database, emptied of raw and ops rows before each test. Yields the Target."""
    with psycopg.connect(wh_target.conninfo("admin"), autocommit=True) as conn:
        tables = conn.execute(
            "select format('%I.%I', schemaname, tablename) from pg_tables where schemaname in ('raw', 'ops')"
        ).fetchall()
        if tables:
            conn.execute("truncate " + ", ".join(t for (t,) in tables) + " cascade")
    return wh_target
