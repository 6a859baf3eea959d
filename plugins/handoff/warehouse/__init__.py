"""The warehouse: where it is, how each component connects, and the one-time setup of schemas and roles.

Two kinds of target:
- the local cluster (default): ``LocalCluster`` under ``.local/warehouse``, port 55432;
- ``HANDOFF_WAREHOUSE_URL``: any PostgreSQL the URL's user may create roles and schemas in.

Roles (docs/architecture.md, "Warehouse roles"), each with its own generated password:
- ``handoff_loader``      writes raw and ops (load tables);
- ``handoff_transformer`` reads raw, writes staging/intermediate/marts (dbt), reads ops.crm_push_log;
- ``handoff_pusher``      reads marts.sql_handoff_queue only, writes ops.crm_push_*;
- ``handoff_bi_reader``   reads marts only.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

import psycopg
from psycopg import sql

from handoff import settings
from handoff.warehouse.local import ROLES, LocalCluster, WarehouseError, new_role_credentials, write_private_json

__all__ = ["ROLES", "LocalCluster", "Target", "WarehouseError", "connect", "setup", "target"]

SCHEMA_SQL = Path(__file__).with_name("schema.sql")


@dataclass(frozen=True)
class Target:
    host: str
    port: int
    dbname: str
    # "admin" and every role -> {"user", "password"}; kept out of repr so no traceback or log prints a password
    credentials: dict[str, dict[str, str]] = field(repr=False)
    local: bool

    def conninfo(self, role: str = "admin", dbname: str | None = None) -> str:
        cred = self.credentials[role]
        return psycopg.conninfo.make_conninfo(
            host=self.host, port=self.port, dbname=dbname or self.dbname, user=cred["user"],
            password=cred["password"], connect_timeout=10, application_name=f"handoff-{role}",
        )

    def url(self, role: str = "admin") -> str:
        cred = self.credentials[role]
        return (f"postgresql://{quote(cred['user'], safe='')}:{quote(cred['password'], safe='')}"
                f"@{self.host}:{self.port}/{self.dbname}")

    def airflow_connection(self, role: str) -> str:
        """The Airflow connection (JSON form, for ``AIRFLOW_CONN_<ID>``) a task uses to connect as ``role``."""
        cred = self.credentials[role]
        return json.dumps({"conn_type": "postgres", "host": self.host, "port": self.port, "schema": self.dbname,
                           "login": cred["user"], "password": cred["password"]})


def target() -> Target:
    """The warehouse everything points at: ``HANDOFF_WAREHOUSE_URL`` if set, else the local cluster."""
    url = settings.external_warehouse_url()
    if url is None:
        cluster = LocalCluster()
        return Target("127.0.0.1", cluster.port, settings.WAREHOUSE_DB, _password_overrides(cluster.credentials()),
                      local=True)
    parts = urlsplit(url)
    if parts.scheme not in {"postgres", "postgresql"} or not parts.hostname:
        raise WarehouseError(
            f"HANDOFF_WAREHOUSE_URL must look like postgresql://user:password@host:5432/dbname (got scheme "
            f"{parts.scheme!r}, host {parts.hostname!r})"
        )
    admin = {"user": unquote(parts.username or os.environ.get("USER", "postgres")),
             "password": unquote(parts.password or "")}
    creds = _password_overrides(_role_credentials(settings.paths().home / "external-credentials.json", parts.hostname))
    creds["admin"] = admin
    return Target(parts.hostname, parts.port or 5432, (parts.path or "/").lstrip("/") or settings.WAREHOUSE_DB,
                  creds, local=False)


def _role_credentials(path: Path, host: str) -> dict[str, dict[str, str]]:
    """Generated role passwords for an external warehouse, kept 0600 in local state (never in the repo)."""
    stored: dict[str, dict[str, dict[str, str]]] = json.loads(path.read_text()) if path.exists() else {}
    if host not in stored:
        stored[host] = new_role_credentials()
        write_private_json(path, stored)
    return dict(stored[host])


def _password_overrides(creds: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
    """``HANDOFF_<ROLE>_PASSWORD`` fixes a role's password (docker-compose, a secrets manager), for either target;
    ``warehouse up`` then sets it on the role."""
    creds = dict(creds)
    for role in ROLES:
        if os.environ.get(f"HANDOFF_{role.upper()}_PASSWORD"):
            creds[role] = {"user": f"handoff_{role}", "password": os.environ[f"HANDOFF_{role.upper()}_PASSWORD"]}
    return creds


def connect(role: str = "admin", *, autocommit: bool = False, tgt: Target | None = None) -> psycopg.Connection:
    tgt = tgt or target()
    return open_connection(tgt.conninfo(role), autocommit=autocommit, where=f"{tgt.host}:{tgt.port} as {role}")


def open_connection(conninfo: str, *, autocommit: bool = False, where: str = "the warehouse") -> psycopg.Connection:
    """Connect, turning the usual failures into a sentence that says what to check."""
    try:
        return psycopg.connect(conninfo, autocommit=autocommit)
    except psycopg.OperationalError as exc:
        msg = str(exc).strip().splitlines()[-1] if str(exc).strip() else repr(exc)
        hint = ("check the user and password" if "password" in msg or "authentication" in msg
                else "is the server running and reachable? (`handoff warehouse up` for the local one)")
        raise WarehouseError(f"cannot connect to PostgreSQL at {where}: {msg} — {hint}") from None


def create_database(name: str) -> sql.Composed:
    """``create database`` for a warehouse: collation "C" (byte order), character classes from the cluster.

    glibc's C.UTF-8 sorts by code point too, so results are the same, but PostgreSQL sorts text in any collation
    other than "C" through strcoll and without abbreviated keys: sorting 3 million md5 strings took 6.8-9.2 s
    against 2.0 s in "C" here. dbt's models sort text keys (visitor keys, contact and event ids) all the time.
    """
    return sql.SQL("create database {} template template0 lc_collate 'C'").format(sql.Identifier(name))


def setup(tgt: Target | None = None, log=print) -> None:
    """Create the database, schemas, raw/ops tables and least-privilege roles. Idempotent."""
    tgt = tgt or target()
    if tgt.local:
        where = f"{tgt.host}:{tgt.port}"
        with open_connection(tgt.conninfo("admin", dbname="postgres"), autocommit=True, where=where) as conn:
            if not conn.execute("select 1 from pg_database where datname = %s", [tgt.dbname]).fetchone():
                log(f"creating database {tgt.dbname}")
                conn.execute(create_database(tgt.dbname))
    with connect("admin", autocommit=True, tgt=tgt) as conn:
        _create_roles(conn, tgt)
        conn.execute(SCHEMA_SQL.read_text())
        _grant(conn, tgt)


def _create_roles(conn: psycopg.Connection, tgt: Target) -> None:
    """Create or update the roles. Roles belong to the whole cluster: a second ``setup`` of another database on it
    at the same moment (two test workers, two deployments) can update the same role row, which PostgreSQL refuses
    with "tuple concurrently updated" (or a duplicate on create); the loser tries that role again."""
    for role in ROLES:
        cred = tgt.credentials[role]
        for attempt in range(1, 6):
            exists = conn.execute("select 1 from pg_roles where rolname = %s", [cred["user"]]).fetchone()
            verb = sql.SQL("alter") if exists else sql.SQL("create")
            try:
                conn.execute(sql.SQL("{} role {} with login password {} nosuperuser nocreatedb nocreaterole").format(
                    verb, sql.Identifier(cred["user"]), sql.Literal(cred["password"])))
                break
            except (psycopg.errors.InternalError_, psycopg.errors.UniqueViolation):
                if attempt == 5:
                    raise
                time.sleep(0.05 * attempt)


def _grant(conn: psycopg.Connection, tgt: Target) -> None:
    user = {role: sql.Identifier(tgt.credentials[role]["user"]) for role in ROLES}
    db = sql.Identifier(tgt.dbname)
    statements = [
        # nobody but the roles below gets anything by default
        "revoke all on database {db} from public",
        "revoke create on schema public from public",
        "grant connect on database {db} to {loader}, {transformer}, {pusher}, {bi_reader}",
        # loader: writes raw and the load state in ops
        "grant usage on schema raw, ops to {loader}",
        "grant select, insert on all tables in schema raw to {loader}",
        "grant select, insert, update on ops.load_log, ops.file_ledger, ops.landing_files, ops.crm_watermarks "
        "to {loader}",
        # transformer (dbt): reads raw, owns the dbt schemas, reads what the push acknowledged
        "grant usage on schema raw, ops to {transformer}",
        "grant select on all tables in schema raw to {transformer}",
        "grant select on ops.crm_push_log, ops.crm_push_acknowledged, ops.load_log to {transformer}",
        "grant usage, create on schema staging, intermediate, marts, backtest to {transformer}",
        "grant temporary on database {db} to {transformer}",  # dbt stages incremental and unit-test rows in temp tables
        # pusher: the queue (granted on the table by dbt's `grants` config) and its own log
        "grant usage on schema marts, ops to {pusher}",
        "grant select, insert, update on ops.crm_push_log, ops.crm_push_preview to {pusher}",
        "grant delete on ops.crm_push_preview to {pusher}",
        "grant usage on all sequences in schema ops to {pusher}",
        # bi reader: marts only (table grants by dbt's `grants` config, re-applied on every build)
        "grant usage on schema marts to {bi_reader}",
        "alter default privileges for role {transformer} in schema marts grant select on tables to {bi_reader}",
    ]
    for stmt in statements:
        conn.execute(sql.SQL(stmt).format(db=db, **user))
