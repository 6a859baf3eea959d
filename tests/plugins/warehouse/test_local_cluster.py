"""The local warehouse: starts, is idempotent, survives a crash, and says clearly what is wrong."""

from __future__ import annotations

import builtins
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from handoff import warehouse
from handoff.warehouse import local

from tests.ports import free_port

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(params=["system", "pgserver"])
def cluster(request, tmp_path_factory, monkeypatch):
    """A throw-away cluster from the machine's binaries, and one from the pgserver wheel's (the fallback)."""
    if request.param == "pgserver":
        monkeypatch.setenv("HANDOFF_PG_BINARIES", "pgserver")
    elif local.find_binaries().origin != "system":
        pytest.skip("no system PostgreSQL binaries on this machine")
    c = local.LocalCluster(root=tmp_path_factory.mktemp("wh") / "warehouse", port=free_port())
    yield c
    c.down(log=lambda *_: None)


@pytest.mark.slow
def test_up_is_idempotent_and_survives_a_killed_postmaster(cluster):
    assert cluster.up(log=lambda *_: None) is True
    expected = "pgserver" if os.environ.get("HANDOFF_PG_BINARIES") else "system"
    assert local.find_binaries().origin == expected
    assert cluster.up(log=lambda *_: None) is False  # second start: no-op
    pid = cluster.postmaster_pid()
    os.kill(pid, signal.SIGKILL)
    while local._pid_alive(pid):  # the kill is asynchronous; wait for the process to be gone (or a zombie)
        pass
    assert not cluster.is_running()
    assert (cluster.pgdata / "postmaster.pid").exists()  # the crash left its pid file behind
    messages: list[str] = []
    assert cluster.up(log=messages.append) is True
    assert any("stale postmaster.pid" in m for m in messages)
    assert cluster.is_running()
    tgt = warehouse.Target("127.0.0.1", cluster.port, "postgres", cluster.credentials(), local=True)
    with psycopg.connect(tgt.conninfo("admin")) as conn:
        # initdb's default collation is "C" (fast text sorts), its character classes UTF-8 ones
        assert conn.execute("select datcollate, datctype from pg_database where datname = 'postgres'").fetchone() \
            == ("C", "C.UTF-8")
        # the settings written at start (pgdata/handoff.conf): WAL full-page images compressed with lz4 where the
        # server was built with it (Debian's is, the pgserver wheel's is not: pglz costs more CPU than it saves)
        settings = dict(conn.execute("select name, setting from pg_settings where sourcefile like '%/handoff.conf'"))
        assert settings["wal_compression"] == ("off" if expected == "pgserver" else "lz4")
        assert (settings["synchronous_commit"], settings["max_wal_size"]) == ("off", "4096")
        # shared_buffers in 8 kB pages: a sixth of this machine's memory
        assert int(settings["shared_buffers"]) * 8 // 1024 == local.shared_buffers_mib(local.memory_bytes())
    # ALTER SYSTEM still overrides them, from the next start on
    with psycopg.connect(tgt.conninfo("admin"), autocommit=True) as conn:
        conn.execute("alter system set max_wal_size = '2GB'")
    assert cluster.down(log=lambda *_: None) is True
    assert cluster.up(log=lambda *_: None) is True
    with psycopg.connect(tgt.conninfo("admin")) as conn:
        assert conn.execute("show max_wal_size").fetchone()[0] == "2GB"
    assert cluster.down(log=lambda *_: None) is True
    assert cluster.down(log=lambda *_: None) is False


@pytest.mark.parametrize(("memory_gib", "mib"), [(24, 4096), (2, 341), (0.5, 128), (128, 8192)])
def test_shared_buffers_are_a_sixth_of_memory_within_bounds(memory_gib, mib):
    assert local.shared_buffers_mib(int(memory_gib * 2**30)) == mib


@pytest.mark.parametrize(("limit", "expected"), [("2147483648\n", 2**31), ("max\n", None), (None, None)])
def test_memory_is_the_containers_limit_when_lower(limit, expected, tmp_path, monkeypatch):
    """A cgroup limit below physical memory wins; "max" (no limit) or no cgroup file leaves physical memory."""
    physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    limit_file = tmp_path / "memory.max"
    if limit is not None:
        limit_file.write_text(limit)
    monkeypatch.setattr(local, "CGROUP_MEMORY_MAX", limit_file)
    assert local.memory_bytes() == min(physical, expected or physical)


def test_port_in_use_is_a_clear_error(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        c = local.LocalCluster(root=tmp_path / "warehouse", port=port)
        with pytest.raises(local.WarehouseError, match=rf"Port {port} is already in use.*HANDOFF_WAREHOUSE_PORT"):
            c.up(log=lambda *_: None)


def test_no_binaries_says_what_to_install(monkeypatch):
    monkeypatch.setattr(local.shutil, "which", lambda name: None)
    monkeypatch.setattr(local.Path, "glob", lambda self, pattern: iter(()))
    real_import = builtins.__import__

    def no_pgserver(name, *args, **kwargs):
        if name == "pgserver":
            raise ImportError("No module named 'pgserver'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pgserver)
    expected = r"apt-get install postgresql-15.*pgserver==0\.1\.4.*HANDOFF_WAREHOUSE_URL"
    with pytest.raises(local.WarehouseError, match=expected):
        local.find_binaries()


def test_pgserver_binaries_are_the_fallback(monkeypatch):
    monkeypatch.setattr(local.shutil, "which", lambda name: None)
    monkeypatch.setattr(local.Path, "glob", lambda self, pattern: iter(()))
    found = local.find_binaries()
    assert found.origin == "pgserver"
    assert (found.bindir / "postgres").exists()


@pytest.mark.parametrize("url, message", [
    ("http://example/db", "must look like postgresql://"),
    ("postgresql://nobody:wrong@127.0.0.1:{port}/handoff", "password authentication failed"),
    ("postgresql://x:y@127.0.0.1:{closed}/handoff", "is the server running"),
])
def test_bad_warehouse_url_exits_non_zero_with_a_message(url, message, wh_target):
    env = {**os.environ, "HANDOFF_WAREHOUSE_URL": url.format(port=wh_target.port, closed=free_port()),
           "HANDOFF_HOME": str(REPO / ".local")}
    res = subprocess.run([sys.executable, "-m", "handoff.cli", "warehouse", "status"], env=env, capture_output=True,
                         text=True, cwd=REPO)
    assert res.returncode != 0
    assert message in res.stderr


@pytest.mark.parametrize("args, message", [
    (["--date", "2026-02-30"], "is not a date in the form YYYY-MM-DD"),
    (["--date", "24/11/2026"], "is not a date in the form YYYY-MM-DD"),
    (["--date", "2999-01-01"], "has not ended yet"),
    (["--date", "2026-11-01", "--parallel", "0"], "'0' is not a number of tasks at once (1 or more)"),
    (["--date", "2026-11-01", "--parallel", "-2"], "'-2' is not a number of tasks at once (1 or more)"),
])
def test_run_rejects_bad_arguments(args, message):
    res = subprocess.run([sys.executable, "-m", "handoff.cli", "run", *args], capture_output=True,
                         text=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO / "plugins")})
    assert res.returncode == 2
    assert message in res.stderr


def test_the_warehouse_database_sorts_text_by_code_point_and_still_lowercases_unicode(wh):
    """create_database: collation "C" (the order glibc's C.UTF-8 gives, sorted without strcoll), character
    classes from the cluster, so lower() of an email still folds non-ASCII letters."""
    words = ["b", "B", "a", "é", "_x", "Z", "10", "9", " z", "€"]
    with psycopg.connect(wh.conninfo("admin")) as conn:
        collation = conn.execute("select datcollate from pg_database where datname = current_database()").fetchone()
        ordered = conn.execute("select array_agg(w order by w) from unnest(%s::text[]) as w", [words]).fetchone()[0]
        lowered = conn.execute("select lower('ÉMILE.Ünal@Example.COM')").fetchone()[0]
    assert collation == ("C",)
    assert ordered == sorted(words)  # Python compares strings by code point
    assert lowered == "émile.ünal@example.com"


def test_roles_are_least_privilege(wh):
    """The BI reader cannot read raw or ops nor write; the loader cannot read marts; the pusher only the queue."""
    with psycopg.connect(wh.conninfo("admin"), autocommit=True) as conn:
        conn.execute("create table if not exists marts.probe (x int)")
        conn.execute("grant select on marts.probe to handoff_bi_reader")
    checks = [
        ("bi_reader", "select * from raw.analytics_events limit 1"),
        ("bi_reader", "select * from ops.load_log limit 1"),
        ("bi_reader", "insert into marts.probe values (1)"),
        ("bi_reader", "create table marts.evil (x int)"),
        ("loader", "select * from marts.probe"),
        ("pusher", "select * from marts.probe"),
        ("pusher", "select * from raw.crm_contacts limit 1"),
        ("transformer", "insert into raw.crm_contacts (_batch_id, _loaded_at, _source, record_id, record)"
                        " values (gen_random_uuid(), now(), 'x', '1', '{}')"),
    ]
    for role, statement in checks:
        with psycopg.connect(wh.conninfo(role), autocommit=True) as conn:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)
    with psycopg.connect(wh.conninfo("bi_reader")) as conn:
        assert conn.execute("select count(*) from marts.probe").fetchone() == (0,)
    with psycopg.connect(wh.conninfo("loader")) as conn:
        assert conn.execute("select count(*) from raw.analytics_events").fetchone() == (0,)


def test_a_target_never_shows_its_passwords(wh_target):
    """Tracebacks, logs and hypothesis reports print reprs: no password may be in one."""
    text = repr(wh_target) + str(wh_target)
    for cred in wh_target.credentials.values():
        assert cred["password"] not in text


def test_a_role_password_can_be_fixed_by_the_environment(monkeypatch, tmp_path):
    """HANDOFF_<ROLE>_PASSWORD wins over the generated one, for the local cluster and an external URL alike."""
    monkeypatch.setenv("HANDOFF_HOME", str(tmp_path))
    generated = warehouse.target().credentials["pusher"]["password"]
    monkeypatch.setenv("HANDOFF_PUSHER_PASSWORD", "fixed-by-deployment")
    assert warehouse.target().credentials["pusher"] == {"user": "handoff_pusher", "password": "fixed-by-deployment"}
    assert warehouse.target().credentials["loader"]["password"] != "fixed-by-deployment"
    monkeypatch.setenv("HANDOFF_WAREHOUSE_URL", "postgresql://admin:pw@db.example:5432/handoff")
    assert warehouse.target().credentials["pusher"]["password"] == "fixed-by-deployment"
    monkeypatch.delenv("HANDOFF_PUSHER_PASSWORD")
    monkeypatch.delenv("HANDOFF_WAREHOUSE_URL")
    assert warehouse.target().credentials["pusher"]["password"] == generated
    assert oct((tmp_path / "warehouse" / "credentials.json").stat().st_mode & 0o777) == "0o600"


@pytest.mark.slow
def test_source_freshness_reads_the_last_load_time_from_an_index_not_the_whole_raw_table(wh):
    """dbt source freshness asks max(_loaded_at) of raw.analytics_events every day: an index answers it from its
    right edge; without one PostgreSQL reads every raw event (13 GB at tier M). Seq scans are priced out so the
    plan shows what the schema offers, whatever the test table's size."""
    with psycopg.connect(wh.conninfo("admin")) as conn:
        conn.execute("set enable_seqscan = off")
        plan = "\n".join(r[0] for r in conn.execute("explain select max(_loaded_at) from raw.analytics_events"))
    assert "analytics_events_loaded_idx" in plan, plan


def _set_up_repeatedly(db_times: tuple[str, int]) -> list[str]:
    """One of two processes running `warehouse.setup` for its own database again and again (a test worker each)."""
    import dataclasses  # noqa: PLC0415

    dbname, times = db_times
    tgt = dataclasses.replace(warehouse.target(), dbname=dbname, local=False)
    errors = []
    for _ in range(times):
        try:
            warehouse.setup(tgt, log=lambda *_: None)
        except psycopg.Error as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
    return errors


def test_two_setups_of_databases_on_one_cluster_at_once_both_succeed(wh_target):
    """Roles belong to the cluster: two `setup`s updating the same role row at the same moment made one fail with
    "tuple concurrently updated" (two xdist workers at start-up); the loser now retries that role."""
    import multiprocessing  # noqa: PLC0415

    from psycopg import sql  # noqa: PLC0415

    names = [f"{wh_target.dbname}_twin_{i}" for i in range(2)]
    with psycopg.connect(wh_target.conninfo("admin"), autocommit=True) as conn:
        for name in names:
            conn.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))
            conn.execute(warehouse.create_database(name))
    try:
        with multiprocessing.get_context("spawn").Pool(2) as pool:
            results = pool.map(_set_up_repeatedly, [(name, 15) for name in names])
        assert results == [[], []]
    finally:
        with psycopg.connect(wh_target.conninfo("admin"), autocommit=True) as conn:
            for name in names:
                conn.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))
