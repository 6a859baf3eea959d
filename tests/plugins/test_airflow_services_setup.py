"""`handoff airflow up`'s pieces that need no running Airflow: the guard between the scheduler and an in-process
`handoff run` of the same HANDOFF_HOME (the run lock, held by the scheduler's supervisor), and the Celery layout
(Redis's config and password, the workers' commands and environment, the error when redis-server is missing)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import threading
from dataclasses import replace
from datetime import date

import pytest
from handoff import airflow_run, airflow_services, celery_broker, supervisor
from handoff.warehouse import Target

from tests.waiting import wait_until

SLEEPER = [sys.executable, "-c", "import time; time.sleep(600)"]
DAY = date(2026, 10, 31)


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("HANDOFF_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def _scheduler(home) -> tuple[supervisor.Service, int]:
    """A stand-in scheduler started as `up` starts the real one: its supervisor holds the run lock."""
    service = supervisor.Service("scheduler", airflow_services.services_folder())
    sup = supervisor.start(service, SLEEPER, os.environ, lock=airflow_run.run_lock_path(),
                           note={"command": airflow_run.SCHEDULER_HOLDS})
    wait_until(service.child_pid, "the stand-in scheduler to start", timeout=30)
    return service, sup


def test_handoff_run_is_refused_while_the_scheduler_runs_and_with_wait_starts_once_it_stopped(home):
    service, sup = _scheduler(home)
    try:
        with pytest.raises(airflow_run.RunLocked) as refused, airflow_run.run_lock(DAY):
            pytest.fail("the run lock was taken beside the scheduler")
        message = str(refused.value)
        assert message.startswith(f"Airflow's scheduler (handoff airflow up) (pid {sup}) runs handoff_daily "
                                  f"against this HANDOFF_HOME ({home.resolve()})")
        assert "handoff airflow down" in message and "--wait" in message

        # --wait: blocks, saying for whom, and goes on once the services are down
        said, ran = [], threading.Event()

        def waiting_run() -> None:
            with airflow_run.run_lock(DAY, wait=True, log=said.append):
                ran.set()

        thread = threading.Thread(target=waiting_run)
        thread.start()
        wait_until(lambda: said, "the waiting run to say it waits", timeout=30)
        assert said == [f"waiting for Airflow's scheduler (handoff airflow up) (pid {sup}) to stop "
                        "(handoff airflow down)"]
        assert not ran.is_set()
    finally:
        assert supervisor.stop([service], timeout=10) == []
    thread.join(timeout=30)
    assert ran.is_set()
    with airflow_run.run_lock(DAY):  # free again
        pass


def test_the_scheduler_does_not_start_while_an_in_process_run_holds_the_lock(home):
    with airflow_run.run_lock(DAY):
        with pytest.raises(airflow_services.ServicesError,
                           match=rf"^handoff run for 2026-10-31 \(pid {os.getpid()}\) is running against this "
                                 r"HANDOFF_HOME .*the scheduler would run handoff_daily beside it"):
            airflow_services.refuse_while_a_run_holds_the_lock()
        # and should one be started anyway (a race with `up`'s check), its supervisor does not run the command
        service = supervisor.Service("scheduler", airflow_services.services_folder())
        supervisor.start(service, SLEEPER, os.environ, lock=airflow_run.run_lock_path(), note={"command": "x"})
        wait_until(lambda: service.child().get("exit_code") == 3, "the supervisor to refuse", timeout=30)
        assert "scheduler not started" in service.logfile.read_text()
        wait_until(lambda: service.supervisor_pid() is None, "the refusing supervisor to exit", timeout=30)
    airflow_services.refuse_while_a_run_holds_the_lock()  # no run: nothing to refuse


def test_celery_layout_keeps_redis_password_off_command_lines_and_in_a_private_config(home, monkeypatch):
    monkeypatch.setattr(celery_broker.shutil, "which", lambda name: f"/usr/bin/{name}")
    creds, _ = airflow_services.credentials()
    state = airflow_services.State(port=8461, crm_port=None, executor="celery", redis_port=6390)
    conf = celery_broker.write_config(state.redis_port, creds["redis_password"])
    assert stat.S_IMODE(conf.stat().st_mode) == 0o600 and conf.parent == home.resolve() / "airflow" / "redis"
    text = conf.read_text()
    assert "bind 127.0.0.1\nport 6390\n" in text and f"requirepass {creds['redis_password']}\n" in text

    commands = airflow_services.commands(state)
    assert list(commands)[0] == "redis" and commands["redis"] == ["/usr/bin/redis-server", str(conf)]
    workers = {name: cmd for name, cmd in commands.items() if name.startswith("worker-")}
    assert sorted(workers) == ["worker-1", "worker-2"]
    for name, cmd in workers.items():
        assert cmd[-9:] == ["celery", "worker", "--celery-hostname", f"{name}@%h", "--concurrency",
                             str(airflow_services.worker_concurrency()), "--pid",
                             str(airflow_services.services_folder() / f"{name}.celery.pid"), "--skip-serve-logs"]
    assert all(creds["redis_password"] not in " ".join(cmd) for cmd in commands.values())
    # the two workers together run as many tasks at once as the LocalExecutor would (1 each on 2 cores)
    assert 2 * airflow_services.worker_concurrency() <= max(2, airflow_services.parallelism())

    monkeypatch.setattr(airflow_services.airflow_env, "warehouse_connections_env", dict)  # no warehouse here
    tgt = Target(host="127.0.0.1", port=55461, dbname="handoff", credentials={}, local=True)
    env = airflow_services.service_env(state, creds, tgt, None)
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert env["AIRFLOW__CELERY__BROKER_URL"] == f"redis://:{creds['redis_password']}@127.0.0.1:6390/0"
    assert env["AIRFLOW__CELERY__RESULT_BACKEND"].startswith("db+postgresql+psycopg2://handoff_airflow:")
    assert env["AIRFLOW__CELERY__RESULT_BACKEND"].endswith("@127.0.0.1:55461/airflow_meta")
    local = airflow_services.service_env(replace(state, executor="local"), creds, tgt, None)
    assert local["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor" and "AIRFLOW__CELERY__BROKER_URL" not in local


def test_without_redis_server_the_celery_executor_says_what_to_install(home, monkeypatch):
    monkeypatch.setattr(celery_broker.shutil, "which", lambda name: None)
    with pytest.raises(airflow_services.ServicesError, match=r"redis-server not found: .*`apt-get install "
                                                             r"redis-server`"):
        airflow_services.up(executor="celery", log=lambda *_: None)


def test_the_processes_that_fork_tasks_start_with_dbt_imported_and_run_airflow_s_own_command_line(home, monkeypatch):
    monkeypatch.setattr(celery_broker.shutil, "which", lambda name: f"/usr/bin/{name}")
    state = airflow_services.State(port=8461, crm_port=None, executor="celery", redis_port=6390)
    commands = airflow_services.commands(state)
    entry = [sys.executable, "-m", "handoff.airflow_main"]
    forking = {name for name, cmd in commands.items() if cmd[:3] == entry}
    assert forking == {"scheduler", "worker-1", "worker-2"}
    assert commands["scheduler"][3:] == ["scheduler", "--skip-serve-logs"]
    assert all(commands[name][:3] == [sys.executable, "-m", "airflow"]
               for name in ("api-server", "dag-processor", "triggerer"))

    # the entry imports what a dbt task imports, then hands its arguments to Airflow's command line
    from handoff.dbt_dag import TASK_MODULES  # noqa: PLC0415

    probe = ("import sys, runpy, inspect; sys.argv = ['airflow_main', 'version'];"
             " runpy.run_module('handoff.airflow_main', run_name='__main__');"
             f" print(sorted(m for m in {TASK_MODULES!r} if m in sys.modules));"
             " from dbt_common import behavior_flags; from dbt.contracts.project import Project;"
             " print(inspect.getabsfile(behavior_flags) in inspect.modulesbyfile,"
             " Project.json_schema.__func__.cache_info().currsize >= 4)")
    res = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=False)
    assert res.returncode == 0, res.stderr[-2000:]
    version, imported, caches = res.stdout.strip().splitlines()[-3:]
    import airflow  # noqa: PLC0415

    assert version == airflow.__version__
    assert imported == repr(sorted(TASK_MODULES))
    # and the caches a dbt call fills on first use are full: inspect's module files, the project's JSON schema
    assert caches == "True True"
