"""bench/run.py's arithmetic on the database's counters (db_work): what a one-day build made the database do."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

RUN = Path(__file__).resolve().parents[2] / "bench" / "run.py"


def _bench_run():
    spec = importlib.util.spec_from_file_location("bench_run", RUN)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("bench_run", module)
    spec.loader.exec_module(module)
    return module


def _counters(database: dict, tables: dict) -> dict:
    zero = dict.fromkeys(("tup_returned", "tup_fetched", "tup_inserted", "tup_updated", "tup_deleted", "blks_hit",
                          "blks_read", "temp_bytes"), 0)
    return {"database": {**zero, **database}, "tables": tables}


def _table(name: str, *, read: int = 0, written: int = 0, seq_scans: int = 0, index_scans: int = 0,
           blocks: int = 0) -> dict:
    return {"name": name, "read": read, "written": written, "seq_scans": seq_scans, "index_scans": index_scans,
            "blocks_read_from_os": blocks}


def test_db_work_takes_the_deltas_and_counts_a_replaced_table_from_zero():
    bench = _bench_run()
    before = _counters({"tup_returned": 1_000, "tup_inserted": 10, "blks_hit": 500, "temp_bytes": 0},
                       {1: _table("intermediate.kept", read=400, written=5, seq_scans=2, index_scans=7, blocks=30),
                        2: _table("marts.replaced", read=90, written=90, seq_scans=1, blocks=4),
                        4: _table("intermediate.probed", index_scans=1),
                        5: _table("intermediate.idle", read=9, seq_scans=1, blocks=2),
                        6: _table("intermediate.evicted", read=50, seq_scans=1)})
    after = _counters({"tup_returned": 1_750, "tup_inserted": 40, "tup_updated": 5, "tup_deleted": 5,
                       "blks_hit": 800, "blks_read": 20, "temp_bytes": 3 * 2**20},
                      {1: _table("intermediate.kept", read=700, written=25, seq_scans=3, index_scans=9, blocks=45),
                       # the build replaced marts.replaced: a new oid, whose counts start at zero
                       3: _table("marts.replaced", read=120, written=100, blocks=5),
                       # probes that found nothing: no row read, but listed and counted
                       4: _table("intermediate.probed", index_scans=6),
                       5: _table("intermediate.idle", read=9, seq_scans=1, blocks=2),
                       # no row read by the build, but blocks read from the OS (e.g. by a vacuum): listed
                       6: _table("intermediate.evicted", read=50, seq_scans=1, blocks=7)})
    work = bench.db_work(before, after)
    assert work["rows_read"] == 750
    assert work["rows_written"] == 30 + 5 + 5
    assert work["blocks_touched"] == 300 + 20 and work["blocks_read_from_os"] == 20
    assert work["temp_mib"] == 3.0
    assert work["index_scans"] == 2 + 5
    assert work["tables_by_rows_read"] == [
        {"table": "intermediate.kept", "rows_read": 300, "rows_written": 20, "seq_scans": 1, "index_scans": 2,
         "blocks_read_from_os": 15},
        {"table": "marts.replaced", "rows_read": 120, "rows_written": 100, "seq_scans": 0, "index_scans": 0,
         "blocks_read_from_os": 5},
        {"table": "intermediate.probed", "rows_read": 0, "rows_written": 0, "seq_scans": 0, "index_scans": 5,
         "blocks_read_from_os": 0},
        {"table": "intermediate.evicted", "rows_read": 0, "rows_written": 0, "seq_scans": 0, "index_scans": 0,
         "blocks_read_from_os": 7},
    ]


def test_growth_by_table_takes_each_tables_median_and_puts_the_largest_growth_first():
    bench = _bench_run()

    def run(**reads: int) -> dict:
        return {"db_work": {"tables_by_rows_read": [{"table": name, "rows_read": n} for name, n in reads.items()]}}

    # three runs each; "late" is read in one of the three shorter runs only (its median there is 0)
    short = [run(steady=100, grows=50, late=9), run(steady=110, grows=60), run(steady=90, grows=40)]
    long_ = [run(steady=100, grows=120), run(steady=100, grows=100), run(steady=105, grows=110, new=7)]
    assert bench.growth_by_table(short, long_) == [
        {"table": "grows", "short": 50, "long": 110, "growth": 2.2},
        {"table": "late", "short": 0, "long": 0, "growth": None},  # then equal growth by name
        {"table": "new", "short": 0, "long": 0, "growth": None},
        {"table": "steady", "short": 100, "long": 100, "growth": 1.0},
    ]


def test_mart_fingerprints_ignore_row_order_and_see_one_changed_value_or_a_duplicate_row(wh_target):
    """The equal stage's hashes: the same rows in another order hash the same; one value changed, or one row
    twice, hash differently; the row count is the table's."""
    import psycopg  # noqa: PLC0415

    bench = _bench_run()
    admin = wh_target.conninfo("admin")
    rows = "(1, 'a', 0.5::float8, date '2026-11-01'), (2, 'b', null, date '2026-11-02'), (3, 'c', 1e-9, null)"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute("drop schema if exists bench_fingerprints cascade; create schema bench_fingerprints")
        try:
            for name, order in (("ascending", "1"), ("descending", "1 desc")):
                conn.execute(f"create table bench_fingerprints.{name} as select * from (values {rows}) as v"
                             f" (id, label, score, day) order by {order}")
            conn.execute("create table bench_fingerprints.changed as select * from bench_fingerprints.ascending")
            conn.execute("update bench_fingerprints.changed set score = 0.25 where id = 1")
            conn.execute("create table bench_fingerprints.twice as select * from bench_fingerprints.ascending"
                         " union all select * from bench_fingerprints.ascending where id = 3")
            conn.execute("create table bench_fingerprints.empty as select * from bench_fingerprints.ascending limit 0")
            prints = bench.mart_fingerprints(admin, "bench_fingerprints")
        finally:
            conn.execute("drop schema bench_fingerprints cascade")
    assert sorted(prints) == ["ascending", "changed", "descending", "empty", "twice"]
    assert prints["ascending"] == prints["descending"]
    assert prints["ascending"][0] == 3 and prints["twice"][0] == 4 and prints["empty"] == [0, "0"]
    assert prints["changed"][0] == 3 and prints["changed"][1] != prints["ascending"][1]
    assert prints["twice"][1] != prints["ascending"][1]


def test_db_counters_count_a_tables_scanned_rows_and_index_entries_as_the_database_does(wh_target, monkeypatch):
    """db_counters on a real database: a scan of a 1,000-row table adds 1,000 to its rows read, an index range of
    10 entries adds 10, and the database's tup_returned moves by at least their sum."""
    import psycopg  # noqa: PLC0415

    bench = _bench_run()
    admin = wh_target.conninfo("admin")
    monkeypatch.setattr(bench, "DB", wh_target.dbname)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute("drop schema if exists bench_counters cascade; create schema bench_counters")
        conn.execute("create table bench_counters.t as select n from generate_series(1, 1000) as n")
        conn.execute("create index on bench_counters.t (n); analyze bench_counters.t")
        try:
            before = bench.db_counters(admin)
            # no condition on n: a bound outside the statistics' range has the planner probe the index's end
            assert conn.execute("select count(*) from bench_counters.t").fetchone()[0] == 1000
            conn.execute("set enable_seqscan = off")
            assert conn.execute("select count(*) from bench_counters.t where n between 11 and 20").fetchone()[0] == 10
            conn.execute("reset enable_seqscan")
            conn.close()  # a backend's counts reach the statistics by the time it exits
            work = bench.db_work(before, bench.db_counters(admin))
        finally:
            with psycopg.connect(admin, autocommit=True) as cleanup:
                cleanup.execute("drop schema bench_counters cascade")
    table = next(t for t in work["tables_by_rows_read"] if t["table"] == "bench_counters.t")
    assert table["rows_read"] == 1000 + 10 and table["seq_scans"] == 1 and table["index_scans"] == 1
    assert work["rows_read"] >= 1010


def test_node_seconds_and_slowest_nodes_read_dbts_run_results(tmp_path):
    """The one-day build's time by node kind (summed, then rounded once) and its slowest nodes, from a hand-written
    run_results.json: two models, two data tests, one unit test."""
    bench = _bench_run()
    results = [("model.handoff.int_events_attributed", 12.345), ("model.handoff.dim_contacts", 0.604),
               ("test.handoff.unique_dim_contacts_contact_id.abc", 0.333), ("test.handoff.not_null_x.def", 0.333),
               ("unit_test.handoff.dim_contacts.keeps_one_row", 0.05)]
    target = tmp_path / "dbt_target"
    target.mkdir()
    (target / "run_results.json").write_text(json.dumps(
        {"results": [{"unique_id": uid, "execution_time": t} for uid, t in results]}))
    p = {"work": str(tmp_path)}
    assert bench._node_seconds(p) == {"model": {"nodes": 2, "seconds": 12.95}, "test": {"nodes": 2, "seconds": 0.67},
                                      "unit_test": {"nodes": 1, "seconds": 0.05}}
    assert bench._slowest_nodes(p, n=2) == {"int_events_attributed": 12.3, "dim_contacts": 0.6}
