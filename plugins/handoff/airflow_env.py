"""The local Airflow: its home, its configuration and the connections a run needs, as environment variables.

Airflow reads its configuration from ``AIRFLOW__SECTION__KEY`` and connections from ``AIRFLOW_CONN_<ID>``
variables; the CLI sets them for the in-process run (``handoff run``), and a real deployment sets the same
connections in its own secrets backend. Anything already present in the environment wins, so pointing handoff at
a real CRM or warehouse is a matter of setting those variables (README, "Point it at real systems").
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping

from handoff import settings


def airflow_config_env() -> dict[str, str]:
    p = settings.paths()
    return {
        "AIRFLOW_HOME": str(p.airflow_home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(settings.DAGS_DIR),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(settings.PLUGINS_DIR),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        # 2 cores: a handful of concurrent tasks at most
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": "4",
        "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "60",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": os.environ.get("AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{p.airflow_home / 'airflow.db'}",
        "HANDOFF_HOME": str(p.home),
        # no phoning home: Cosmos's usage telemetry and dbt's anonymous stats stay off
        "AIRFLOW__COSMOS__ENABLE_TELEMETRY": "False",
        "DO_NOT_TRACK": "1",
        "SCARF_ANALYTICS": "false",
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    }


def warehouse_connections_env() -> dict[str, str]:
    from handoff import warehouse  # noqa: PLC0415

    tgt = warehouse.target()
    return {
        _conn_var(settings.CONN_LOADER): tgt.airflow_connection("loader"),
        _conn_var(settings.CONN_TRANSFORMER): tgt.airflow_connection("transformer"),
        _conn_var(settings.CONN_PUSHER): tgt.airflow_connection("pusher"),
    }


def crm_connection(base_url: str, token: str) -> str:
    """The Airflow connection for the CRM: host = base URL, password = the private-app token."""
    return json.dumps({"conn_type": "http", "host": base_url, "password": token})


def _conn_var(conn_id: str) -> str:
    return "AIRFLOW_CONN_" + conn_id.upper()


def environment(overrides: Mapping[str, str] | None = None) -> dict[str, str]:
    """The local Airflow's variables: its configuration, the warehouse connections, then ``overrides``, less the
    variables the user already set (those win). What ``apply`` sets for the in-process run and what ``handoff
    airflow up`` gives its services (airflow_services)."""
    env = {**airflow_config_env(), **warehouse_connections_env(), **(overrides or {})}
    return {key: value for key, value in env.items() if key not in os.environ}


def apply(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Set the local Airflow environment in this process; variables the user already set are kept."""
    applied = environment(extra)
    os.environ.update(applied)
    settings.paths().airflow_home.mkdir(parents=True, exist_ok=True)
    return applied
