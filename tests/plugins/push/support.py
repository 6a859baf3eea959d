"""Helpers for the push tests: a seeded CRM sandbox, the queue table the dbt model will build, and checks."""

from __future__ import annotations

import hashlib
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
from handoff.crm.client import CrmClient
from handoff.crm.rate_limit import RateLimiter
from handoff.crm_sandbox import load_objects
from psycopg import sql

TOKEN = "push-test-token"
T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
AS_OF = datetime(2026, 4, 1, tzinfo=UTC)


class FakeClock:
    """Epoch seconds that move only when someone sleeps: retries and rate-limit waits cost no real time. The client's
    limiters and the sandbox share it, so the sandbox's windows see the client's pacing, not the test's speed."""

    def __init__(self) -> None:
        self.now = T0.timestamp()

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        # at least a microsecond: `now + (deadline - now)` can round to just below the deadline, and a waiter
        # that then sleeps the 1e-13 s left would not move a float clock at 1000.0 at all
        self.now += max(1e-6, seconds)


def owner(owner_id: int, archived: bool = False) -> dict[str, Any]:
    return {"id": str(owner_id), "email": f"rep{owner_id}@example.com", "firstName": "Rep", "lastName": str(owner_id),
            "userId": 9000 + owner_id, "teams": [], "archived": archived,
            "createdAt": "2025-01-01T00:00:00Z", "updatedAt": "2025-01-01T00:00:00Z"}


def contact(contact_id: int, stage: str = "marketingqualifiedlead", archived: bool = False) -> dict[str, Any]:
    return {"id": str(contact_id), "archived": archived,
            "properties": {"email": f"p{contact_id}@example.com", "lifecyclestage": stage, "hubspot_owner_id": "1",
                           "createdate": "2025-01-01T00:00:00Z", "lastmodifieddate": "2025-06-01T00:00:00Z"},
            "createdAt": "2025-01-01T00:00:00Z", "updatedAt": "2025-06-01T00:00:00Z"}


def seed_crm(path: Path, n_contacts: int, stages: dict[int, str] | None = None, archived: tuple[int, ...] = ()) -> None:
    """Owners 1 and 2 (3 archived); contacts 1..n at marketingqualifiedlead unless ``stages`` says otherwise."""
    stages = stages or {}
    load_objects(path, "owners", [owner(1), owner(2), owner(3, archived=True)], replace=True)
    load_objects(path, "contacts", [contact(i, stages.get(i, "marketingqualifiedlead"), i in archived)
                                    for i in range(1, n_contacts + 1)])


def client(url: str, clock: FakeClock, *, max_attempts: int = 8, **kwargs: Any) -> CrmClient:
    return CrmClient(url, TOKEN, timeout=10, max_attempts=max_attempts, sleep=clock.sleep,
                     rate_limiter=RateLimiter(100, 10.0, clock=clock, sleep=clock.sleep), **kwargs)


def dedupe_key(contact_id: str, sql_at: datetime) -> str:
    return hashlib.md5(f"{contact_id}{sql_at.isoformat()}".encode()).hexdigest()  # noqa: S324 - a key, not security


def make_queue(target, rows: list[dict[str, Any]]) -> None:
    """(Re)create marts.sql_handoff_queue with the columns the dbt model promises, as admin, readable by the pusher."""
    pusher = sql.Identifier(target.credentials["pusher"]["user"])
    with psycopg.connect(target.conninfo("admin"), autocommit=True) as conn:
        # cascade: the view marts.sql_handoff_delivery, built on the real queue by another module, goes with it
        conn.execute("drop table if exists marts.sql_handoff_queue cascade")
        conn.execute("""
            create table marts.sql_handoff_queue (
                contact_id text, crm_contact_id text, owner_id text, sql_at timestamptz, score numeric,
                rule_ids text, reasons text, top_content text, first_touch_channel text,
                last_activity_at timestamptz, dedupe_key text)""")
        conn.execute(sql.SQL("grant select on marts.sql_handoff_queue to {}").format(pusher))
        with conn.cursor() as cur:
            cur.executemany(
                "insert into marts.sql_handoff_queue values (%(contact_id)s, %(crm_contact_id)s, %(owner_id)s, "
                "%(sql_at)s, %(score)s, %(rule_ids)s, %(reasons)s, %(top_content)s, %(first_touch_channel)s, "
                "%(last_activity_at)s, %(dedupe_key)s)", rows)


def queue_row(n: int, *, crm_id: str | None = None, owner_id: str | None = "1", sql_at: datetime | None = None
              ) -> dict[str, Any]:
    sql_at = sql_at or T0 + timedelta(minutes=n)
    contact_id = f"wh-{n}"
    return {"contact_id": contact_id, "crm_contact_id": str(n) if crm_id is None else crm_id, "owner_id": owner_id,
            "sql_at": sql_at, "score": 72.5 + n % 10, "rule_ids": "demo_request,pricing_page,fit_persona",
            "reasons": "Requested a demo; viewed pricing 3 times; economic buyer",
            "top_content": "/ebooks/buyers-guide (decision)", "first_touch_channel": "ORGANIC_SEARCH",
            "last_activity_at": sql_at - timedelta(hours=1), "dedupe_key": dedupe_key(contact_id, sql_at)}


class Api:
    """Direct reads of the sandbox (for assertions; not counted against anything the push does)."""

    def __init__(self, url: str) -> None:
        self.http = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)

    def all(self, object_type: str, properties: list[str], **params: Any) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        after = None
        while True:
            query = {"limit": 100, "properties": ",".join(properties), **params, **({"after": after} if after else {})}
            page = self.http.get(f"/crm/v3/objects/{object_type}", params=query).raise_for_status().json()
            out += page["results"]
            after = (page.get("paging") or {}).get("next", {}).get("after")
            if not after:
                return out

    def tasks_by_key(self) -> Counter[str]:
        live = self.all("tasks", ["handoff_dedupe_key"])
        archived = self.all("tasks", ["handoff_dedupe_key"], archived="true")
        return Counter(t["properties"]["handoff_dedupe_key"] for t in live + archived)

    def stages(self) -> dict[str, str]:
        return {c["id"]: c["properties"]["lifecyclestage"] for c in self.all("contacts", ["lifecyclestage"])}


def log_rows(target, where: str = "true") -> list[dict[str, Any]]:
    from psycopg.rows import dict_row

    with psycopg.connect(target.conninfo("admin"), row_factory=dict_row) as conn:
        return conn.execute(f"select * from ops.crm_push_log where {where} order by push_id").fetchall()


def calls(stats: dict[str, Any], key: str) -> int:
    return sum((stats["by_path"].get(key) or {}).values())
