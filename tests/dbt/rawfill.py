"""Fill raw.* straight from a sample folder (docs/data-contracts.md "Sample output"), per the raw contract.

A test helper for the dbt models, independent of the loaders: one batch per call, COPY into the append-only
tables as the admin role. ``fill(conninfo, sample_dir)`` loads the CRM objects and every analytics day;
``fill(..., days=[...])`` loads only those analytics day folders (late files, re-loads).
"""

from __future__ import annotations

import gzip
import json
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path

import psycopg

CRM_OBJECTS = ("owners", "companies", "contacts", "deals", "meetings", "calls")


def _lines(path: Path) -> Iterable[str]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                yield line


def fill(conninfo: str, sample_dir: str | Path, *, crm: bool = True, days: Iterable[str] | None = None,
         loaded_at: datetime | None = None, keep: Callable[[dict], bool] | None = None) -> dict[str, int]:
    """Insert the sample's CRM objects and analytics events into raw.*; returns rows per table.

    ``keep(event)`` (optional) picks the analytics events to load, e.g. all but those held back as late.
    """
    sample = Path(sample_dir)
    batch = str(uuid.uuid4())
    loaded = loaded_at or datetime.now(UTC)
    counts: dict[str, int] = {}
    with psycopg.connect(conninfo) as conn, conn.cursor() as cur:
        if crm:
            for obj in CRM_OBJECTS:
                path = sample / "crm" / f"{obj}.jsonl.gz"
                if not path.exists():
                    continue
                n = 0
                with cur.copy(f"copy raw.crm_{obj} (_batch_id, _loaded_at, _source, record_id, updated_at, "
                              "archived, record) from stdin") as cp:
                    for line in _lines(path):
                        rec = json.loads(line)
                        cp.write_row((batch, loaded, str(path), str(rec["id"]), rec.get("updatedAt"),
                                      bool(rec.get("archived", False)), line.strip()))
                        n += 1
                counts[f"crm_{obj}"] = n
        folders = sorted(p for p in (sample / "analytics").iterdir() if p.is_dir())
        if days is not None:
            wanted = set(days)
            folders = [p for p in folders if p.name in wanted]
        n = 0
        with cur.copy("copy raw.analytics_events (_batch_id, _loaded_at, _source, _line, message_id, event_type, "
                      "event_name, anonymous_id, user_id, event_at, received_at, record) from stdin") as cp:
            for folder in folders:
                for path in sorted(folder.glob("*.jsonl*")):
                    for i, line in enumerate(_lines(path), start=1):
                        ev = json.loads(line)
                        if keep is not None and not keep(ev):
                            continue
                        cp.write_row((batch, loaded, str(path), i, ev["messageId"], ev["type"], ev.get("event"),
                                      ev.get("anonymousId"), ev.get("userId"), ev["timestamp"], ev["receivedAt"],
                                      line.strip()))
                        n += 1
        counts["analytics_events"] = n
        conn.commit()
    return counts


def truncate_raw(conninfo: str) -> None:
    with psycopg.connect(conninfo, autocommit=True) as conn:
        tables = conn.execute(
            "select format('%I.%I', schemaname, tablename) from pg_tables where schemaname = 'raw'").fetchall()
        if tables:
            conn.execute("truncate " + ", ".join(t for (t,) in tables))


def drop_dbt_relations(admin: str) -> None:
    """A clean slate for a dbt build: drop every table and view dbt owns (other tests may leave stand-ins)."""
    with psycopg.connect(admin, autocommit=True) as conn:
        for kind, name in conn.execute(
                "select 'table', format('%I.%I', schemaname, tablename) from pg_tables"
                " where schemaname in ('staging', 'intermediate', 'marts') union all"
                " select 'view', format('%I.%I', schemaname, viewname) from pg_views"
                " where schemaname in ('staging', 'intermediate', 'marts')").fetchall():
            conn.execute(f"drop {kind} if exists {name} cascade")


if __name__ == "__main__":  # python tests/dbt/rawfill.py SAMPLE_DIR DBNAME
    import dataclasses
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "plugins"))
    from handoff import warehouse

    tgt = dataclasses.replace(warehouse.target(), dbname=sys.argv[2] if len(sys.argv) > 2 else "handoff")
    truncate_raw(tgt.conninfo("admin"))
    print(fill(tgt.conninfo("admin"), sys.argv[1]))
