"""bench/run.py's arithmetic on the database's counters (db_work): what a one-day build made the database do."""

from __future__ import annotations

import importlib.util
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


def test_db_work_takes_the_deltas_and_counts_a_replaced_table_from_zero():
    bench = _bench_run()
    before = _counters({"tup_returned": 1_000, "tup_inserted": 10, "blks_hit": 500, "temp_bytes": 0},
                       {1: {"name": "intermediate.kept", "read": 400, "written": 5, "seq_scans": 2},
                        2: {"name": "marts.replaced", "read": 90, "written": 90, "seq_scans": 1}})
    after = _counters({"tup_returned": 1_750, "tup_inserted": 40, "tup_updated": 5, "tup_deleted": 5,
                       "blks_hit": 800, "blks_read": 20, "temp_bytes": 3 * 2**20},
                      {1: {"name": "intermediate.kept", "read": 700, "written": 25, "seq_scans": 3},
                       # the build replaced marts.replaced: a new oid, whose counts start at zero
                       3: {"name": "marts.replaced", "read": 120, "written": 100, "seq_scans": 0}})
    work = bench.db_work(before, after)
    assert work["rows_read"] == 750
    assert work["rows_written"] == 30 + 5 + 5
    assert work["blocks_touched"] == 300 + 20 and work["blocks_read_from_os"] == 20
    assert work["temp_mib"] == 3.0
    assert work["top_tables_by_rows_read"] == [
        {"table": "intermediate.kept", "rows_read": 300, "rows_written": 20, "seq_scans": 1},
        {"table": "marts.replaced", "rows_read": 120, "rows_written": 100, "seq_scans": 0},
    ]
