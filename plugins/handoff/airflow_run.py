"""Run the daily DAG in-process through Airflow itself (what ``airflow dags test`` does), for one logical day."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from handoff import airflow_env, settings, supervisor
from handoff.run_progress import RunProgress

DAG_ID = "handoff_daily"


class RunFailed(RuntimeError):
    pass


class RunLocked(RunFailed):
    """Another ``handoff run`` (or ``handoff demo``) of the same HANDOFF_HOME holds the run lock."""


# what the scheduler's supervisor writes into the run lock while it holds it (``airflow_services.up``)
SCHEDULER_HOLDS = "Airflow's scheduler (handoff airflow up)"


def run_lock_path() -> Path:
    return settings.paths().airflow_home / "handoff_run.lock"


@contextlib.contextmanager
def run_lock(day: date | None, *, command: str = "handoff run", wait: bool = False, log=print):
    """One run at a time per HANDOFF_HOME: its runs share Airflow's SQLite metadata database (two runs of one day at
    once collide on the dag_run row) and the warehouse (two dbt builds would replace the same tables). An exclusive
    flock on ``<airflow home>/handoff_run.lock``, released when the block ends or the process dies; the holder's
    command, day and pid are written into the file for the message of the one refused (or, with ``wait``,
    waiting). ``handoff airflow up``'s scheduler holds it too, for as long as it runs (its supervisor does)."""
    path = run_lock_path()
    fd, taken = supervisor.try_lock(path)
    try:
        if not taken:
            holder = lock_holder(path)
            if not wait and holder.startswith(SCHEDULER_HOLDS):
                raise RunLocked(
                    f"{holder} runs {DAG_ID} against this HANDOFF_HOME ({settings.paths().home}) and its "
                    f"warehouse, so a {command} beside it could load, build and push the same day at the same "
                    f"time: trigger the day in Airflow instead (its UI, or POST /api/v2/dags/{DAG_ID}/dagRuns), "
                    f"or stop the services first (handoff airflow down), or pass --wait to start once they have "
                    f"stopped") from None
            if not wait:
                again = f" and run {day.isoformat()} again" if day and command == "handoff run" else " and try again"
                raise RunLocked(
                    f"another {holder} is running; runs of one HANDOFF_HOME ({settings.paths().home}) share "
                    f"Airflow's metadata database and the warehouse, so they go one at a time: wait for it to "
                    f"finish{again}, or pass --wait to start when it has") from None
            log(f"waiting for {holder} to stop (handoff airflow down)" if holder.startswith(SCHEDULER_HOLDS)
                else f"waiting for another {holder} to finish")
            fcntl.flock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
        held = {"pid": os.getpid(), "date": day.isoformat() if day else None}
        if command != "handoff run":
            held["command"] = command
        os.pwrite(fd, json.dumps(held).encode(), 0)
        yield
    finally:
        os.close(fd)  # closing the only descriptor releases the lock


def lock_holder(path) -> str:
    """'handoff run for 2026-11-30 (pid 1234)', from what the holder wrote into the lock file."""
    try:
        held = json.loads(path.read_text())
        command = held.get("command") or "handoff run"
        day = f" for {held['date']}" if held.get("date") else ""
        return f"{command}{day} (pid {held['pid']})"
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return "handoff run (pid unknown)"


def ensure_metadata_db(log=print) -> None:
    """Create or migrate Airflow's SQLite metadata database (about 4 s the first time, a no-op after)."""
    db = settings.paths().airflow_home / "airflow.db"
    marker = settings.paths().airflow_home / ".migrated"
    if db.exists() and marker.exists():
        return
    log("preparing Airflow's metadata database (airflow db migrate)")
    res = subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], capture_output=True, text=True,
                         env=os.environ.copy(), check=False)
    if res.returncode != 0:
        raise RunFailed(f"airflow db migrate failed:\n{res.stderr[-3000:]}")
    marker.touch()


def ensure_dbt_manifest(log=print) -> None:
    """Cosmos renders the dbt stage from target/manifest.json; (re)parse when the project changed."""
    from handoff import dbt_runner  # noqa: PLC0415

    if dbt_runner.manifest_is_fresh():
        return
    log("parsing the dbt project (dbt parse)")
    dbt_runner.run(["parse"], quiet=True, needs_db=False)


def interval_for(day: date) -> tuple[datetime, datetime]:
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return start, start + timedelta(days=1)


def run_day(day: date, *, conf: dict | None = None, log=print, verbose: bool = False,
            parallel: int | None = None, quiet: bool = False) -> dict[str, str]:
    """Run ``handoff_daily`` for the UTC day ``day``; returns {task_id: state}; raises RunFailed on failure.

    By default the tasks run one at a time in this process (``airflow dags test``). With ``parallel=N`` they go to
    Airflow's LocalExecutor, up to N at once, each in its own worker process as under a scheduler: for that run
    this process starts Airflow's execution API server (the tasks report to it) on a free loopback port.
    Unless ``quiet`` (or ``verbose``, which streams the tasks' own output), each task is printed as it starts and
    ends (run_progress.py).
    """
    from handoff.dbt_dag import execution_mode, preload_task_modules  # noqa: PLC0415

    if execution_mode() == "watcher":
        # dag.test runs the trigger of a deferred task in line (airflow/sdk/definitions/dag.py, "running trigger in
        # line"): a model's sensor picked before the producer polls, every 10 s until its 60-minute timeout, for a
        # result that only the producer, never started, would write (tried: it hung after dbt_staging)
        raise RunFailed("HANDOFF_DBT_EXECUTION_MODE=watcher runs only under Airflow's scheduler and triggerer: start "
                        "them with handoff airflow up and trigger the day there (handoff run uses dag.test, in which a "
                        "model's sensor can wait for a producer that never starts)")
    if parallel:
        os.environ.update({"AIRFLOW__CORE__EXECUTOR": "LocalExecutor", "AIRFLOW__CORE__PARALLELISM": str(parallel),
                           "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": str(parallel)})
    airflow_env.apply()
    ensure_metadata_db(log)
    ensure_dbt_manifest(log)
    if parallel:
        preload_task_modules()  # before the LocalExecutor forks its workers, which fork the tasks
    from airflow.dag_processing.dagbag import DagBag  # noqa: PLC0415

    bag = DagBag(dag_folder=str(settings.DAGS_DIR / "handoff_daily.py"))
    if bag.import_errors:
        raise RunFailed("the DAG does not import:\n" + "\n".join(bag.import_errors.values()))
    dag = bag.get_dag(DAG_ID)
    _, end = interval_for(day)
    refuse_before_start_date(dag, day, end)
    # CronDataIntervalTimetable: a manual run at D+1 00:00 covers the whole day D = [D, D+1).
    log(f"running {DAG_ID} for {day.isoformat()} (data interval {day.isoformat()}T00:00Z → {end.date()}T00:00Z)")
    logfile = settings.paths().airflow_home / "logs" / f"handoff_run_{day.isoformat()}.log"
    api = _execution_api(logfile.parent / "execution_api.log", log) if parallel else contextlib.nullcontext()
    with api:
        if verbose:
            dagrun = dag.test(logical_date=end, run_conf=conf or {}, use_executor=bool(parallel))
        else:
            log(f"task output (Airflow, dbt) goes to {logfile}")
            with _output_to(logfile) as terminal:
                def say(line: str) -> None:
                    print(f"  {line}", file=terminal)

                progress = contextlib.nullcontext() if quiet else RunProgress(DAG_ID, end, len(dag.tasks), say, logfile)
                with progress:
                    dagrun = dag.test(logical_date=end, run_conf=conf or {}, use_executor=bool(parallel))
    states = _task_states(dagrun) if dagrun is not None else {}
    check_outcome(day, str(getattr(dagrun, "state", "")), states, None if verbose else logfile)
    return states


def check_outcome(day: date, run_state: str, states: dict[str, str], logfile: Path | None = None) -> None:
    """Raise RunFailed unless the run succeeded and ran at least one task. A task Airflow never started has the
    state ``None``: a run whose every task is like that ran nothing (Airflow still calls it a success). A failed
    run names its unsuccessful tasks and ends with the last lines of ``logfile``."""
    if all(s in {"None", "removed"} for s in states.values()):
        raise RunFailed(f"{DAG_ID} run for {day.isoformat()} ran no task (task states: {states or 'none'}): Airflow "
                        f"created no task instance for it, e.g. a day outside the DAG's start_date/end_date, so "
                        f"nothing was loaded, built or pushed")
    if run_state != "success":
        failed = sorted(t for t, s in states.items() if s not in {"success", "skipped"})
        tail = "" if logfile is None else f"\n--- last lines of {logfile} ---\n{_tail(logfile)}"
        raise RunFailed(f"{DAG_ID} run for {day.isoformat()} ended {run_state}; not successful: {failed}{tail}")


def refuse_before_start_date(dag, day: date, logical_date: datetime) -> None:
    """Airflow creates a task instance only for tasks whose start_date is at or before the run's logical date
    (DagRun.verify_integrity); a day earlier than that would run nothing, so say so instead."""
    starts = [t.start_date for t in dag.tasks if t.start_date is not None]
    if starts and all(start > logical_date for start in starts):
        start = min(starts)
        first = (start - timedelta(microseconds=1)).date()  # the day whose run starts at or after start_date
        raise RunFailed(f"{day.isoformat()} is before {DAG_ID}'s start_date {start:%Y-%m-%d %H:%M} UTC: Airflow runs "
                        f"no task for it, so nothing would be loaded, built or pushed; the earliest day it runs is "
                        f"{first.isoformat()} (its run starts at {start:%Y-%m-%d %H:%M}); change start_date in "
                        f"dags/handoff_daily.py to run earlier days")


@contextlib.contextmanager
def _execution_api(logfile, log, timeout: float = 90.0):
    """Airflow's execution API server (``airflow api-server --apps execution``) on a free loopback port, for the
    LocalExecutor's workers, while the block runs. The JWT secret that signs the workers' tokens is the
    environment's (AIRFLOW__API_AUTH__JWT_SECRET) or a new random one; it stays in the environment, never logged."""
    port = free_loopback_port()
    url = f"http://127.0.0.1:{port}/execution/"
    os.environ["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] = url
    os.environ.update(loopback_without_proxy(os.environ))  # the workers and the health check reach it directly
    os.environ.setdefault("AIRFLOW__API_AUTH__JWT_SECRET", secrets.token_urlsafe(64))
    logfile.parent.mkdir(parents=True, exist_ok=True)
    log(f"starting Airflow's execution API on 127.0.0.1:{port} for the LocalExecutor (log: {logfile})")
    with open(logfile, "ab") as out:
        server = subprocess.Popen([sys.executable, "-m", "airflow", "api-server", "--host", "127.0.0.1", "--port",
                                   str(port), "--apps", "execution", "--workers", "1"],
                                  stdout=out, stderr=subprocess.STDOUT, env=os.environ.copy())
    try:
        deadline = time.monotonic() + timeout
        while not _healthy(url + "health"):
            if server.poll() is not None:
                raise RunFailed(f"Airflow's execution API server exited {server.returncode}:\n{_tail(logfile)}")
            if time.monotonic() > deadline:
                raise RunFailed(f"Airflow's execution API server did not answer in {timeout:.0f} s:\n"
                                f"{_tail(logfile)}")
            time.sleep(0.2)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def free_loopback_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def loopback_without_proxy(env) -> dict[str, str]:
    """NO_PROXY / no_proxy of ``env`` with 127.0.0.1 added: our own loopback servers are reached directly, whatever
    proxy is set."""
    out = {}
    for var in ("NO_PROXY", "no_proxy"):
        hosts = [h for h in env.get(var, "").split(",") if h]
        out[var] = ",".join([*hosts, "127.0.0.1"] if "127.0.0.1" not in hosts else hosts)
    return out


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - our own loopback server
            return response.status == 200
    except OSError:
        return False


@contextlib.contextmanager
def _output_to(path):
    """Send this process's stdout and stderr (file descriptors: dbt, Airflow and subprocesses too) to a file; yields
    the terminal they pointed to before."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(path, "ab") as fh, os.fdopen(os.dup(saved[0]), "w", buffering=1) as terminal:
        os.dup2(fh.fileno(), 1)
        os.dup2(fh.fileno(), 2)
        try:
            yield terminal  # where the process's stdout went before: for what the user should still see
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def _tail(path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no output)"


def _task_states(dagrun) -> dict[str, str]:
    from airflow.models.taskinstance import TaskInstance  # noqa: PLC0415
    from airflow.settings import Session  # noqa: PLC0415

    with Session() as session:
        tis = session.query(TaskInstance).filter(TaskInstance.dag_id == DAG_ID,
                                                 TaskInstance.run_id == dagrun.run_id).all()
        return {ti.task_id: str(ti.state) for ti in tis}
