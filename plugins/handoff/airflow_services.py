"""Real Airflow 3 on this machine, no Docker: ``handoff airflow up | down | status``.

``up`` starts, each as a supervised background process (``handoff.supervisor``; pid and log files under
``$HANDOFF_HOME/airflow/services/``): Airflow's api-server (UI, public REST API and the execution API the tasks
report to, on 127.0.0.1), scheduler (LocalExecutor, parallelism sized to the machine), dag-processor and triggerer,
and the CRM sandbox when no real CRM is configured. Airflow's metadata lives in its own database (``airflow_meta``,
owned by its own role ``handoff_airflow``) on the warehouse's PostgreSQL; ``up`` creates it and runs ``airflow db
migrate``. The services get the same connections the in-process run gets (``airflow_env``), through their
environment.

Generated secrets (the metadata role's password, the UI admin's password, the JWT and session secrets, the Fernet
key, Redis's password) are kept 0600 in ``$HANDOFF_HOME/airflow/credentials.json``; the admin password is printed
once, by the ``up`` that generates it, and is also in the SimpleAuthManager's passwords file (0600) Airflow reads it
from.

``up --executor celery`` runs the same DAG on Airflow's CeleryExecutor instead: Redis (the Debian package's
``redis-server``, not its system service) as the broker, on 127.0.0.1 with a generated password, its config (0600)
and data under ``$HANDOFF_HOME/airflow/redis/``; the metadata database as Celery's result backend; and two Celery
workers (``airflow celery worker``), each a supervised service with its own log, together as many tasks at once as
the LocalExecutor would run. The scheduler hands each task to Redis, a worker takes it and runs it.

The scheduler's supervisor holds ``handoff run``'s run lock (``airflow_run.run_lock``) while it runs: an in-process
run of the same HANDOFF_HOME is refused (or waits, with ``--wait``), and ``up`` refuses while such a run holds it.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from psycopg import sql

from handoff import airflow_env, airflow_run, celery_broker, local_services, settings, supervisor
from handoff.airflow_api import Api
from handoff.supervisor import ServicesError
from handoff.warehouse.local import _port_in_use, write_private_json

DAG_ID = airflow_run.DAG_ID
ADMIN_USER = "admin"
METADATA_DB = "airflow_meta"
METADATA_ROLE = "handoff_airflow"
DEFAULT_PORT = 8080
PORT_ENV = "HANDOFF_AIRFLOW_PORT"
AIRFLOW_SERVICES = ("api-server", "scheduler", "dag-processor", "triggerer")
SANDBOX = "crm-sandbox"
EXECUTORS = {"local": "LocalExecutor", "celery": "CeleryExecutor"}
REDIS = "redis"
WORKERS = ("worker-1", "worker-2")


# -- where things are ----------------------------------------------------------------------------------------------
def services_folder() -> Path:
    return settings.paths().airflow_home / "services"


def credentials_file() -> Path:
    return settings.paths().airflow_home / "credentials.json"


def passwords_file() -> Path:
    """SimpleAuthManager's passwords file ({"admin": password}), written by us so Airflow never generates (and logs)
    one."""
    return settings.paths().airflow_home / "simple_auth_manager_passwords.json"


def state_file() -> Path:
    return services_folder() / "state.json"


def services() -> list[supervisor.Service]:
    """Every service ``up`` may start (the Celery ones only with ``--executor celery``); ``down`` stops them all."""
    return [supervisor.Service(name, services_folder()) for name in (SANDBOX, REDIS, *AIRFLOW_SERVICES, *WORKERS)]


def parallelism() -> int:
    """Tasks at once: one per core, at least 2 (the two extract/load tasks overlap), at most 16."""
    return max(2, min(os.cpu_count() or 2, 16))


def worker_concurrency() -> int:
    """Tasks at once on each Celery worker: the machine's parallelism shared between the workers (1 each on 2
    cores), so that the CeleryExecutor runs no more at once than the LocalExecutor would."""
    return max(1, parallelism() // len(WORKERS))


@dataclass(frozen=True)
class State:
    port: int
    crm_port: int | None
    executor: str = "local"
    redis_port: int | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def read_state() -> State | None:
    try:
        data = json.loads(state_file().read_text())
        return State(data["port"], data.get("crm_port"), data.get("executor", "local"), data.get("redis_port"))
    except (FileNotFoundError, ValueError, KeyError):
        return None


# -- secrets -------------------------------------------------------------------------------------------------------
def credentials() -> tuple[dict[str, str], bool]:
    """The generated secrets (created the first time, kept 0600); True while the admin password has not been shown
    (``up`` marks it shown once it has succeeded: a first ``up`` that failed has not printed it)."""
    path = credentials_file()
    stored = json.loads(path.read_text()) if path.exists() else {}
    wanted = {"metadata_password": lambda: secrets.token_urlsafe(24),
              "admin_password": lambda: secrets.token_urlsafe(18),
              "jwt_secret": lambda: secrets.token_urlsafe(64),
              "api_secret_key": lambda: secrets.token_urlsafe(32),
              "fernet_key": lambda: base64.urlsafe_b64encode(os.urandom(32)).decode(),
              "redis_password": lambda: secrets.token_urlsafe(24)}
    if "admin_password" not in stored:
        stored["admin_password_shown"] = False
    new_admin = stored.get("admin_password_shown") is False
    missing = {key: make() for key, make in wanted.items() if key not in stored}
    if missing:
        stored.update(missing)
        write_private_json(path, stored)
    write_private_json(passwords_file(), {ADMIN_USER: stored["admin_password"]})
    return stored, new_admin


# -- the metadata database -----------------------------------------------------------------------------------------
def metadata_url(tgt, password: str) -> str:
    return (f"postgresql+psycopg2://{METADATA_ROLE}:{quote(password, safe='')}@{tgt.host}:{tgt.port}/"
            f"{METADATA_DB}")


def ensure_metadata_database(tgt, password: str, log: Callable[[str], None]) -> None:
    """Create (or update the password of) the role ``handoff_airflow`` and the database ``airflow_meta`` it owns,
    on the warehouse's server: Airflow's metadata apart from the warehouse's data."""
    from handoff import warehouse  # noqa: PLC0415

    admin_db = "postgres" if tgt.local else tgt.dbname
    where = f"{tgt.host}:{tgt.port}"
    with warehouse.open_connection(tgt.conninfo("admin", dbname=admin_db), autocommit=True, where=where) as conn:
        exists = conn.execute("select 1 from pg_roles where rolname = %s", [METADATA_ROLE]).fetchone()
        conn.execute(sql.SQL("{} role {} with login password {} nosuperuser nocreatedb nocreaterole").format(
            sql.SQL("alter" if exists else "create"), sql.Identifier(METADATA_ROLE), sql.Literal(password)))
        if not conn.execute("select 1 from pg_database where datname = %s", [METADATA_DB]).fetchone():
            log(f"creating database {METADATA_DB} (Airflow's metadata) owned by {METADATA_ROLE}")
            conn.execute(sql.SQL("create database {} owner {}").format(sql.Identifier(METADATA_DB),
                                                                      sql.Identifier(METADATA_ROLE)))
        conn.execute(sql.SQL("revoke all on database {} from public").format(sql.Identifier(METADATA_DB)))


def migrate(env: dict[str, str], log: Callable[[str], None]) -> None:
    logfile = services_folder() / "db-migrate.log"
    log(f"airflow db migrate (log: {logfile})")
    with open(logfile, "ab") as out:
        res = subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], stdout=out,  # noqa: S603
                             stderr=subprocess.STDOUT, env=env, check=False)
    if res.returncode != 0:
        raise ServicesError(f"airflow db migrate failed (exit {res.returncode}):\n{airflow_run._tail(logfile)}")


# -- the environment -----------------------------------------------------------------------------------------------
def service_env(state: State, creds: dict[str, str], tgt, crm_token: str | None) -> dict[str, str]:
    """What every service runs with: this process's environment plus the local Airflow's (``airflow_env``, the same
    builder the in-process run uses), pointed at the metadata database, the executor and our api-server. With the
    CeleryExecutor: the broker (Redis) and the result backend (the metadata database) too, in the environment, never
    on a command line. Variables the user set win (``airflow_env.environment``)."""
    n = str(parallelism())
    overrides = {
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": metadata_url(tgt, creds["metadata_password"]),
        "AIRFLOW__CORE__EXECUTOR": EXECUTORS[state.executor],
        "AIRFLOW__CORE__PARALLELISM": n,
        "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": n,
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{state.url}/execution/",
        "AIRFLOW__API__BASE_URL": state.url,
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__API_AUTH__JWT_SECRET": creds["jwt_secret"],
        "AIRFLOW__API__SECRET_KEY": creds["api_secret_key"],
        "AIRFLOW__CORE__FERNET_KEY": creds["fernet_key"],
        "AIRFLOW__CORE__AUTH_MANAGER":
            "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN_USER}:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords_file()),
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
        **airflow_run.loopback_without_proxy(os.environ),
    }
    if state.executor == "celery":
        overrides.update({
            "AIRFLOW__CELERY__BROKER_URL": celery_broker.broker_url(state.redis_port, creds["redis_password"]),
            "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + metadata_url(tgt, creds["metadata_password"]),
            "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(worker_concurrency()),
        })
    if crm_token is not None:
        overrides[local_services.CRM_ENV] = airflow_env.crm_connection(f"http://127.0.0.1:{state.crm_port}",
                                                                      crm_token)
        overrides["HANDOFF_CRM_SANDBOX_TOKEN"] = crm_token  # the sandbox reads its token here, not from argv
    return {**os.environ, **airflow_env.environment(overrides)}


def commands(state: State) -> dict[str, list[str]]:
    airflow = [sys.executable, "-m", "airflow"]
    # the processes that fork task processes import what a dbt task needs first (handoff/airflow_main.py)
    forks_tasks = [sys.executable, "-m", "handoff.airflow_main"]
    out = {
        "api-server": [*airflow, "api-server", "--host", "127.0.0.1", "--port", str(state.port)],
        # task logs are read from the shared log folder: no log-serving ports to collide with another home's
        "scheduler": [*forks_tasks, "scheduler", "--skip-serve-logs"],
        "dag-processor": [*airflow, "dag-processor"],
        "triggerer": [*airflow, "triggerer", "--skip-serve-logs"],
    }
    if state.crm_port is not None:
        out[SANDBOX] = [sys.executable, "-m", "handoff.cli", "crm-sandbox", "--state", str(settings.paths().crm_state),
                        "--port", str(state.crm_port)]
    if state.executor == "celery":
        out = {REDIS: [celery_broker.redis_server(), str(celery_broker.folder() / "redis.conf")], **out}
        for name in WORKERS:
            # its own Celery node name and pid file (two workers of one AIRFLOW_HOME would share airflow-worker.pid);
            # task logs are read from the shared log folder, as the scheduler's are
            out[name] = [*forks_tasks, "celery", "worker", "--celery-hostname", f"{name}@%h", "--concurrency",
                         str(worker_concurrency()), "--pid", str(services_folder() / f"{name}.celery.pid"),
                         "--skip-serve-logs"]
    return out


def _wait(what: str, ready: Callable[[], object], timeout: float, watched: list[supervisor.Service]):
    """Poll ``ready`` until truthy; fail at the deadline, or at once when a watched service has died."""
    deadline = time.monotonic() + timeout
    while True:
        value = ready()
        if value:
            return value
        for service in watched:
            if service.supervisor_pid() is None or service.child().get("restarts", 0) > 0:
                raise ServicesError(f"{service.name} exited while waiting for {what}; its log {service.logfile} "
                                    f"ends:\n{airflow_run._tail(service.logfile)}")
        if time.monotonic() > deadline:
            logs = ", ".join(str(s.logfile) for s in watched)
            raise ServicesError(f"timed out after {timeout:.0f} s waiting for {what}; see {logs}")
        time.sleep(0.5)


# -- up / down / status ------------------------------------------------------------------------------------------
def choose_port(requested: int | None) -> int:
    """The api-server's port: ``--port``, else $HANDOFF_AIRFLOW_PORT, else 8080 or, when 8080 is taken, a free one."""
    configured = requested if requested is not None else os.environ.get(PORT_ENV)
    if configured not in (None, ""):
        port = int(configured)
        if port and _port_in_use(port):
            raise ServicesError(f"port {port} is already in use: stop what uses it, or choose another with "
                                f"--port or {PORT_ENV}")
        return port or airflow_run.free_loopback_port()
    return DEFAULT_PORT if not _port_in_use(DEFAULT_PORT) else airflow_run.free_loopback_port()


def up(*, unpaused: bool = False, port: int | None = None, executor: str | None = None,
       log: Callable[[str], None] = print, timeout: float = 300.0) -> dict:
    """Start whatever of the services is not running; returns {"url", "admin_password" (only when new), ...}.
    ``executor``: "local" or "celery" (default: what runs already, else "local")."""
    from handoff import warehouse  # noqa: PLC0415

    if executor not in (None, *EXECUTORS):
        raise ServicesError(f"unknown executor {executor!r}: one of {', '.join(EXECUTORS)}")
    if executor == "celery":
        celery_broker.redis_server()  # before anything starts: say what to install
    tgt = warehouse.target()
    if tgt.local:
        warehouse.LocalCluster().up(log=log)
    warehouse.setup(tgt, log=log)
    folder = services_folder()
    folder.mkdir(parents=True, exist_ok=True)
    creds, new_admin = credentials()
    running = [s for s in services() if s.alive()]
    state = read_state() if running else None
    if state is not None and executor not in (None, state.executor):
        raise ServicesError(f"Airflow's services run with the {EXECUTORS[state.executor]} ("
                            f"{', '.join(s.name for s in running)}): stop them first (handoff airflow down), then "
                            f"handoff airflow up --executor {executor}")
    if state is None:
        want_sandbox = local_services.needs_sandbox()
        executor = executor or "local"
        state = State(choose_port(port), airflow_run.free_loopback_port() if want_sandbox else None, executor,
                      airflow_run.free_loopback_port() if executor == "celery" else None)
        write_private_json(state_file(), {"port": state.port, "crm_port": state.crm_port,
                                          "executor": state.executor, "redis_port": state.redis_port})
    crm_token = None
    if state.crm_port is not None:
        local_services.ensure_sandbox_state(log)
        crm_token = local_services.sandbox_token()
    ensure_metadata_database(tgt, creds["metadata_password"], log)
    env = service_env(state, creds, tgt, crm_token)
    airflow_run.ensure_dbt_manifest(log)
    migrate(env, log)
    if state.executor == "celery":
        celery_broker.write_config(state.redis_port, creds["redis_password"])
    started = []
    for name, command in commands(state).items():
        service = supervisor.Service(name, folder)
        if service.alive():
            continue
        if service.supervisor_pid() is not None:  # a supervisor whose command is down: replace the pair
            supervisor.stop([service], timeout=20)
        lock = {}
        if name == "scheduler":  # no in-process run of this HANDOFF_HOME beside the scheduler (module docstring)
            refuse_while_a_run_holds_the_lock()
            lock = {"lock": airflow_run.run_lock_path(), "note": {"command": airflow_run.SCHEDULER_HOLDS}}
        offset = service.logfile.stat().st_size if service.logfile.exists() else 0
        supervisor.start(service, command, env, **lock)
        started.append(service)
        log(f"started {name} (log: {service.logfile})")
        if name == REDIS:
            _wait(f"Redis on 127.0.0.1:{state.redis_port}",
                  lambda: celery_broker.answers(state.redis_port, creds["redis_password"]), 60, [service])
        elif name in WORKERS:
            _wait(f"Celery {name} to be ready", lambda s=service, o=offset: _says_ready(s, o), timeout, [service])
    api = Api(state.url)
    _wait("the api-server to answer", api.healthy, timeout, started)
    api = Api.login(state.url, ADMIN_USER, creds["admin_password"])
    dag = _wait(f"{DAG_ID} to be parsed by the dag-processor", lambda: _dag(api), timeout, started)
    if dag["is_paused"] == unpaused:
        status, body = api.call("PATCH", f"/api/v2/dags/{DAG_ID}", {"is_paused": not unpaused})
        if status != 200:
            raise ServicesError(f"could not {'unpause' if unpaused else 'pause'} {DAG_ID}: {status} {body}")
    if new_admin:
        write_private_json(credentials_file(), {**creds, "admin_password_shown": True})
    return {"url": state.url, "admin_password": creds["admin_password"] if new_admin else None,
            "paused": not unpaused, "executor": EXECUTORS[state.executor],
            "timetable": dag.get("timetable_description") or dag.get("timetable_summary"),
            "started": [s.name for s in started]}


def refuse_while_a_run_holds_the_lock() -> None:
    """The scheduler is not started while an in-process run (``handoff run``, ``handoff demo``) of this
    HANDOFF_HOME holds the run lock: it would run the same DAG against the same warehouse beside it."""
    path = airflow_run.run_lock_path()
    with supervisor.holding(path, "{}") as free:
        if not free:
            raise ServicesError(f"{airflow_run.lock_holder(path)} is running against this HANDOFF_HOME "
                                f"({settings.paths().home}); the scheduler would run {DAG_ID} beside it: wait for it "
                                f"to finish, then run handoff airflow up again")


def _says_ready(service: supervisor.Service, offset: int) -> bool:
    """Celery logs '<node name> ready.' once the worker consumes its queue."""
    try:
        with open(service.logfile, "rb") as fh:
            fh.seek(offset)
            return b" ready." in fh.read()
    except OSError:
        return False


def _dag(api: Api) -> dict | None:
    status, body = api.call("GET", f"/api/v2/dags/{DAG_ID}")
    if status == 200:
        return body
    status, errors = api.call("GET", "/api/v2/importErrors")
    for error in errors.get("import_errors", []) if status == 200 else []:
        if "handoff_daily" in error.get("filename", ""):
            raise ServicesError(f"{DAG_ID} does not import:\n{error.get('stack_trace', '')[-3000:]}")
    return None


def down(log: Callable[[str], None] = print) -> list[int]:
    """Stop every service and everything they started; returns pids that would not go (normally none)."""
    running = [s.name for s in services() if s.supervisor_pid() is not None]
    left = supervisor.stop(services())
    log(f"stopped: {', '.join(running)}" if running else "no Airflow service was running")
    return left


def status() -> tuple[bool, list[str]]:
    """(everything running, the lines to print)."""
    state = read_state()
    lines, all_alive = [], True
    for service in services():
        if service.name == SANDBOX and (state is None or state.crm_port is None):
            continue
        if service.name in (REDIS, *WORKERS) and (state is None or state.executor != "celery"):
            continue
        alive = service.alive()
        all_alive &= alive
        lines.append(f"{service.name:<14} {service.describe()}")
        lines.append(f"{'':<14} log: {service.logfile}")
    if state is not None:
        api = Api(state.url)
        lines.append(f"UI and REST API: {state.url} (user {ADMIN_USER}, password in {credentials_file()})")
        if state.executor == "celery":
            lines.append(f"executor: CeleryExecutor, broker Redis on 127.0.0.1:{state.redis_port} (data "
                         f"{celery_broker.folder()}), {len(WORKERS)} workers × {worker_concurrency()} task(s) at once")
        else:
            lines.append(f"executor: LocalExecutor, {parallelism()} task(s) at once")
        if api.healthy():
            health = api.call("GET", "/api/v2/monitor/health")[1]
            lines.append("Airflow's own view: " + ", ".join(
                f"{part} {value.get('status')}" for part, value in health.items() if isinstance(value, dict)))
        if state.crm_port is not None:
            lines.append(f"CRM sandbox: http://127.0.0.1:{state.crm_port} (no AIRFLOW_CONN_HANDOFF_CRM set)")
    lines.append(f"task logs: {settings.paths().airflow_home / 'logs'}")
    return all_alive and state is not None, lines
