"""Push throughput against the rate limit: N SQLs into a CRM sandbox limited to R requests per W seconds.

    .venv/bin/python tests/plugins/push/bench_push.py [--sqls 1000] [--rate 100/1]

from the checkout's root; the script finds the repository from its own path (REPO below), so any working
directory and any checkout location work.

Uses a scratch database (handoff_bench_push) on the project's warehouse and a fresh sandbox per trial. Prints
the push's wall time next to the rate-limit floor (requests needed / sustained rate, handoff.push.floor_seconds),
the requests sent and the 429s the CRM answered, with the client's own rate limiter (handoff.crm.rate_limit.RateLimiter,
a rolling window like HubSpot's).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path

import psycopg
from psycopg import sql

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "plugins"))
sys.path.insert(0, str(REPO))

from handoff import warehouse  # noqa: E402
from handoff.crm.client import CrmClient  # noqa: E402
from handoff.crm.rate_limit import RateLimiter  # noqa: E402
from handoff.crm_sandbox import start_sandbox  # noqa: E402
from handoff.push import PushConfig, floor_seconds, push_queue, requests_needed  # noqa: E402

from tests.plugins.push.support import AS_OF, TOKEN, make_queue, queue_row, seed_crm  # noqa: E402

DB = "handoff_bench_push"


def trial(tgt: warehouse.Target, n: int, rate: tuple[int, float]) -> dict:
    with psycopg.connect(tgt.conninfo("admin"), autocommit=True) as conn:
        conn.execute("truncate ops.crm_push_log, ops.crm_push_preview")
    make_queue(tgt, [queue_row(i) for i in range(1, n + 1)])
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp) / "sandbox.sqlite3"
        seed_crm(state, n)
        handle = start_sandbox(state, token=TOKEN, rate_limit=rate, daily_limit=None)
        try:
            limiter = RateLimiter(rate[0], rate[1])
            with CrmClient(handle.url, TOKEN, rate_limiter=limiter, max_attempts=10) as client:
                t0 = time.perf_counter()
                summary = push_queue(tgt.conninfo("pusher"), client, run_id="bench", as_of=AS_OF,
                                     config=PushConfig(sla_hours=24))
                elapsed = time.perf_counter() - t0
            stats = handle.stats()
        finally:
            handle.stop()
    assert summary["tasks_created"] == n, summary
    return {"elapsed_s": elapsed, "requests": stats["total"],
            "429s": stats["by_status"].get("429", 0), "logical_requests": summary["crm_requests"]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sqls", type=int, default=1000)
    ap.add_argument("--rate", default="100/1", help="sandbox and client limit, requests/seconds")
    args = ap.parse_args()
    count, _, seconds = args.rate.partition("/")
    rate = (int(count), float(seconds or 10))
    base = warehouse.target()
    tgt = dataclasses.replace(base, dbname=DB)
    with psycopg.connect(base.conninfo("admin", dbname="postgres"), autocommit=True) as conn:
        conn.execute(sql.SQL("drop database if exists {}").format(sql.Identifier(DB)))
        conn.execute(sql.SQL("create database {}").format(sql.Identifier(DB)))
    warehouse.setup(dataclasses.replace(tgt, local=False), log=lambda *_: None)
    floor = floor_seconds(args.sqls, rate_limit=rate)
    print(f"{args.sqls} SQLs at {rate[0]} requests / {rate[1]:g} s: {requests_needed(args.sqls)} requests needed, "
          f"floor {floor:.2f} s (requests / sustained rate)")
    r = trial(tgt, args.sqls, rate)
    print(f"  client limiter: {r['elapsed_s']:6.2f} s = {r['elapsed_s'] / floor:4.2f}x floor; "
          f"{r['requests']} HTTP requests ({r['logical_requests']} calls, {r['429s']} answered 429)")


if __name__ == "__main__":
    main()
