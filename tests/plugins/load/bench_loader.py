"""Quick loader benchmark: the analytics loader vs a plain COPY of the same rows into the same table.

    .venv/bin/python tests/plugins/load/bench_loader.py [--lines 500000] [--gz]

from the checkout's root; the script finds the repository from its own path (REPO below), so any working
directory and any checkout location work.

Uses a scratch database (handoff_bench) on the project's warehouse. The plain COPY sends the exact rows the
loader produces (pre-formatted in memory beforehand), in the same 1 MiB writes, so the difference is the cost
of reading, parsing and validating the file. Prints rows/s for both and the loader's peak RSS.
"""

from __future__ import annotations

import argparse
import dataclasses
import resource
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from psycopg import sql

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "plugins"))
sys.path.insert(0, str(REPO))

from handoff import warehouse  # noqa: E402
from handoff.load import analytics, lines  # noqa: E402

from tests.plugins.load.events import write_file  # noqa: E402

DB = "handoff_bench"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lines", type=int, default=500_000)
    ap.add_argument("--gz", action="store_true")
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    base = warehouse.target()
    tgt = dataclasses.replace(base, dbname=DB)
    with psycopg.connect(base.conninfo("admin", dbname="postgres"), autocommit=True) as conn:
        conn.execute(sql.SQL("drop database if exists {}").format(sql.Identifier(DB)))
        conn.execute(sql.SQL("create database {}").format(sql.Identifier(DB)))
    warehouse.setup(dataclasses.replace(tgt, local=False), log=lambda *_: None)
    admin = tgt.conninfo("admin")
    with tempfile.TemporaryDirectory() as tmp:
        landing = Path(tmp) / "landing"
        path = write_file(landing / "2026-03-02" / ("events.jsonl.gz" if args.gz else "events.jsonl"),
                          n=args.lines)
        # the exact rows the loader writes, pre-formatted in memory
        judge = lines.LineJudge(datetime(2026, 3, 3, tzinfo=UTC))
        batch, loaded_at = uuid.uuid4(), datetime.now(UTC)
        prefix = f"{batch}\t{loaded_at.isoformat()}\t{path}\t"
        buffers, out, size, n = [], [], 0, 0
        for item in lines.split_lines(path, lines.DEFAULT_MAX_LINE_BYTES):
            if isinstance(item, lines.Tail):
                break
            body = item[0]
            for ln, (raw, esc) in enumerate(zip(body.split(b"\n"), analytics.copytext.escape_lines(body).split(
                    b"\n"), strict=True), start=n + 1):
                _, f = judge.judge(raw)
                row = f"{prefix}{ln}\t{f[0]}\t{f[1]}\t{f[2]}\t{f[3]}\t{f[4]}\t{f[5]}\t{f[6]}\t".encode() + esc + b"\n"
                out.append(row)
                size += len(row)
                if size >= 1 << 20:
                    buffers.append(b"".join(out))
                    out, size = [], 0
            n += body.count(b"\n") + 1
        buffers.append(b"".join(out))
        print(f"{n} lines, file {path.stat().st_size / 1e6:.1f} MB, rows {sum(map(len, buffers)) / 1e6:.1f} MB")
        for rnd in range(args.rounds):
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute("truncate raw.analytics_events, raw.quarantine, ops.file_ledger, ops.load_log")
                conn.execute("checkpoint")
            with psycopg.connect(admin) as conn, conn.cursor() as cur:
                t0 = time.perf_counter()
                with cur.copy(f"COPY raw.analytics_events ({analytics.EVENT_COLUMNS}) FROM STDIN") as copy:
                    for buf in buffers:
                        copy.write(buf)
                conn.commit()
                plain = time.perf_counter() - t0
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute("truncate raw.analytics_events, raw.quarantine, ops.file_ledger, ops.load_log")
                conn.execute("checkpoint")
            t0 = time.perf_counter()
            res = analytics.load_analytics_files(tgt.conninfo("loader"), landing, datetime(2026, 3, 2, tzinfo=UTC),
                                                 datetime(2026, 3, 3, tzinfo=UTC))
            ours = time.perf_counter() - t0
            assert res["rows_loaded"] == n, res
            print(f"round {rnd + 1}: plain COPY {n / plain:,.0f} rows/s ({plain:.2f}s)   loader {n / ours:,.0f} rows/s "
                  f"({ours:.2f}s)   ratio {plain / ours:.0%}")
    print(f"peak RSS of this process (includes the pre-formatted rows held for the plain COPY): "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
