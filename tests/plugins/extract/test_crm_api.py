"""The incremental CRM sync against the CRM sandbox and the real warehouse."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import psycopg
import pytest
from handoff.crm.client import CrmClient
from handoff.crm.rate_limit import RateLimiter
from handoff.crm_sandbox import load_objects, start_sandbox
from handoff.extract import crm_api

from tests.plugins.crm.sandbox_helpers import TOKEN, Clock, archive, contact, iso, patch

DAY1 = datetime(2026, 3, 1, tzinfo=UTC)
END1 = datetime(2026, 3, 2, tzinfo=UTC)  # interval end of the 2026-03-01 run
END2 = datetime(2026, 3, 3, tzinfo=UTC)


@pytest.fixture
def sandbox(tmp_path):
    clock = Clock(END1 + timedelta(hours=1))
    state = tmp_path / "crm.sqlite3"
    load_objects(state, "contacts", [contact(i, DAY1 + timedelta(minutes=i)) for i in range(20)])
    handle = start_sandbox(state, port=0, token=TOKEN, rate_limit=None, clock=clock, sleep=lambda s: None)
    handle.clock = clock
    yield handle
    handle.stop()


def client_for(handle, clock: Clock | None = None) -> CrmClient:
    """A client for the sandbox whose rate limiters wait on the sandbox's clock (``clock``, else the fixture's) instead
    of sleeping: the search pacing (5 a second) costs no real time, and the sandbox's search limiter sees it (its
    clock only moves when a test sets it or the client waits)."""
    clock = clock or getattr(handle, "clock", None)
    limiter = RateLimiter(10_000, 1.0, clock=clock, sleep=clock.sleep) if clock else RateLimiter(10_000, 1.0)
    return CrmClient(handle.url, TOKEN, rate_limiter=limiter, sleep=lambda s: None)


def q(wh, query, params=None):
    with psycopg.connect(wh.conninfo("admin")) as conn:
        return conn.execute(query, params).fetchall()


def test_first_run_is_a_full_sync_then_only_changes_load(wh, sandbox):
    with client_for(sandbox) as client:
        res = crm_api.sync_crm(wh.conninfo("loader"), client, interval_end=END1, objects=["contacts"])
    assert res["objects"]["contacts"]["rows_loaded"] == 20
    assert q(wh, "select watermark from ops.crm_watermarks where object_type = 'contacts'") == [
        (DAY1 + timedelta(minutes=19),)]
    # the full sync read the list endpoint with the lifecycle history
    [(record,)] = q(wh, "select record from raw.crm_contacts where record_id = '1005'")
    assert record["propertiesWithHistory"]["lifecyclestage"][0]["value"] == "lead"
    assert record["properties"]["email"] == "person5@example.org"

    # three contacts change on 2026-03-02; the 2026-03-02 run loads those three. Its window reaches SEARCH_SETTLE
    # (10 minutes) back before the watermark: it reads 1010-1019 but 1011 (DAY1 + 10..19 min) again, versions raw
    # already holds, so it does not load them
    sandbox.clock.set(END1 + timedelta(hours=10))
    for cid in ("1003", "1007", "1011"):
        patch(sandbox.url, "contacts", cid, {"lifecyclestage": "marketingqualifiedlead"})
    with client_for(sandbox) as client:
        res = crm_api.sync_crm(wh.conninfo("loader"), client, interval_end=END2, objects=["contacts"])
    c = res["objects"]["contacts"]
    assert (c["rows_loaded"], c["rows_quarantined"]) == (3, 0)
    assert c["rows_already_loaded"] == 9
    assert c["watermark"] == (END1 + timedelta(hours=10)).isoformat()
    rows = q(wh, "select record_id, updated_at, record->'properties'->>'lifecyclestage', "
                 "jsonb_array_length(record->'propertiesWithHistory'->'lifecyclestage') "
                 "from raw.crm_contacts where _batch_id = %s order by 1", [c["batch_id"]])
    assert rows == [(cid, END1 + timedelta(hours=10), "marketingqualifiedlead", 2) for cid in ("1003", "1007", "1011")]
    # a third run with nothing new loads nothing (the three at the watermark, read again, are held) and keeps the
    # watermark
    with client_for(sandbox) as client:
        res = crm_api.sync_crm(wh.conninfo("loader"), client, interval_end=END2, objects=["contacts"])
    assert (res["objects"]["contacts"]["rows_loaded"], res["objects"]["contacts"]["rows_already_loaded"]) == (0, 3)
    assert res["objects"]["contacts"]["watermark"] == (END1 + timedelta(hours=10)).isoformat()
    assert q(wh, "select count(*), count(distinct (record_id, updated_at)) from raw.crm_contacts") == [(23, 23)]
    assert q(wh, "select status, rows_read, rows_loaded from ops.load_log order by started_at") == [
        ("loaded", 20, 20), ("loaded", 3, 3), ("loaded", 0, 0)]


def test_a_change_the_search_index_showed_late_is_read_by_the_next_run(wh, sandbox):
    """HubSpot's search index trails writes: a contact changed before the watermark (DAY1 + 19 min), but not found by
    the run that set it, is read by the next run, whose window reaches SEARCH_SETTLE back."""
    with client_for(sandbox) as client:
        crm_api.sync_crm(wh.conninfo("loader"), client, interval_end=END1, objects=["contacts"])
    late = DAY1 + timedelta(minutes=19) - crm_api.SEARCH_SETTLE + timedelta(minutes=1)
    sandbox.clock.set(late)  # the change as the index shows it now: stamped before the watermark
    patch(sandbox.url, "contacts", "1002", {"lifecyclestage": "marketingqualifiedlead"})
    with client_for(sandbox) as client:
        res = crm_api.sync_crm(wh.conninfo("loader"), client, interval_end=END2, objects=["contacts"])
    assert q(wh, "select updated_at, record->'properties'->>'lifecyclestage' from raw.crm_contacts "
                 "where record_id = '1002' and _batch_id = %s", [res["objects"]["contacts"]["batch_id"]]) == [
        (late, "marketingqualifiedlead")]
    assert res["objects"]["contacts"]["watermark"] == (DAY1 + timedelta(minutes=19)).isoformat()
    # the overlap's other contacts (1010-1019) were read again, not loaded again
    assert (res["objects"]["contacts"]["rows_loaded"], res["objects"]["contacts"]["rows_already_loaded"]) == (1, 10)


def test_failure_after_copy_before_commit_keeps_the_watermark(wh, sandbox, monkeypatch):
    with client_for(sandbox) as client:
        crm_api.sync_crm(wh.conninfo("loader"), client, interval_end=END1, objects=["contacts"])
    before = q(wh, "select watermark, batch_id from ops.crm_watermarks")
    sandbox.clock.set(END1 + timedelta(hours=3))
    patch(sandbox.url, "contacts", "1001", {"firstname": "Changed"})

    calls = []

    def boom(*args, **kwargs):  # runs after the COPY, before the watermark update and the commit
        calls.append(1)
        raise RuntimeError("injected failure after COPY")

    monkeypatch.setattr(crm_api.batches, "finish_batch", boom)
    with client_for(sandbox) as client, pytest.raises(RuntimeError, match="injected failure"):
        crm_api.sync_crm(wh.conninfo("loader"), client, interval_end=END2, objects=["contacts"])
    assert calls == [1]
    assert q(wh, "select watermark, batch_id from ops.crm_watermarks") == before
    assert q(wh, "select count(*) from raw.crm_contacts") == [(20,)]

    monkeypatch.undo()
    with client_for(sandbox) as client:
        res = crm_api.sync_crm(wh.conninfo("loader"), client, interval_end=END2, objects=["contacts"])
    assert res["objects"]["contacts"]["rows_loaded"] == 1
    assert q(wh, "select record->'properties'->>'firstname' from raw.crm_contacts where updated_at > %s",
             [END1]) == [("Changed",)]


def test_archived_records_are_captured_with_archived_at(wh, sandbox):
    with client_for(sandbox) as client:
        crm_api.sync_crm(wh.conninfo("loader"), client, interval_end=END1, objects=["contacts"])
    sandbox.clock.set(END1 + timedelta(hours=5))
    archive(sandbox.url, "contacts", "1002")
    with client_for(sandbox) as client:
        res = crm_api.sync_crm(wh.conninfo("loader"), client, interval_end=END2, objects=["contacts"])
    assert res["objects"]["contacts"]["rows_loaded"] == 1
    assert q(wh, "select record_id, archived, record->>'archivedAt', (record->>'archived')::boolean "
                 "from raw.crm_contacts where archived") == [("1002", True, "2026-03-02T05:00:00.000Z", True)]


def test_more_than_10000_changes_in_the_window_are_each_extracted_once(wh, tmp_path):
    """HubSpot's search stops at 10,000 results per query; the client halves the window until each part fits."""
    start = datetime(2026, 3, 2, 1, tzinfo=UTC)
    n = 10_500
    state = tmp_path / "crm.sqlite3"
    tiny = [{"id": str(50_000 + i), "properties": {"email": f"c{i}@example.org"},
             "createdAt": "2026-01-01T00:00:00.000Z",
             "updatedAt": (start + timedelta(milliseconds=300 * i)).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
             "archived": False} for i in range(n)]
    load_objects(state, "contacts", tiny)
    with psycopg.connect(wh.conninfo("admin")) as conn:  # a previous run's watermark: this run is incremental
        conn.execute("insert into ops.crm_watermarks values ('contacts', %s, gen_random_uuid(), now())", [END1])
    clock = Clock(END2)
    handle = start_sandbox(state, port=0, token=TOKEN, rate_limit=None, clock=clock, sleep=lambda s: None)
    try:
        with client_for(handle, clock) as client:
            res = crm_api.sync_crm(wh.conninfo("loader"), client, interval_end=END2, objects=["contacts"])
        stats = handle.stats()
        assert handle.app.search_limiter.refused == 0  # the client kept to 5 searches a second by itself
    finally:
        handle.stop()
    assert res["objects"]["contacts"]["rows_loaded"] == n
    assert q(wh, "select count(*), count(distinct record_id) from raw.crm_contacts") == [(n, n)]
    assert res["objects"]["contacts"]["watermark"] == (start + timedelta(milliseconds=300 * (n - 1))).isoformat()
    search_calls = sum(v for k, v in _flatten(stats) if "search" in k)
    assert search_calls > n // 200  # it searched (and split), rather than listing everything


def _flatten(stats, prefix=""):
    if isinstance(stats, dict):
        for k, v in stats.items():
            yield from _flatten(v, f"{prefix}/{k}")
    elif isinstance(stats, int):
        yield prefix, stats


def test_bad_records_are_quarantined_and_do_not_move_the_watermark(wh, tmp_path):
    state = tmp_path / "crm.sqlite3"
    handle = start_sandbox(state, port=0, token=TOKEN, rate_limit=None, sleep=lambda s: None)
    handle.stop()
    objects = [{"id": "1", "updatedAt": "2026-03-01T10:00:00.000Z", "archived": False, "properties": {}},
               {"updatedAt": "2026-03-01T11:00:00.000Z", "properties": {"email": "x@example.org"}},
               {"id": "3", "updatedAt": "last tuesday", "properties": {}},
               {"id": "4", "updatedAt": "2026-03-01T12:00:00.000Z", "properties": {"note": "a\u0000b"}}]

    class FakeClient:
        base_url = "http://crm.invalid"
        requests_sent = 0

        def iter_objects(self, object_type, properties, *, archived=False, **kw):
            return iter([] if archived else objects)

    res = crm_api.sync_crm(wh.conninfo("loader"), FakeClient(), interval_end=END1, objects=["companies"])
    assert (res["rows_loaded"], res["rows_quarantined"]) == (1, 3)
    assert q(wh, "select record_ref, reason from raw.quarantine order by reason") == [
        ("4", "NUL character (\\u0000) in a value: PostgreSQL cannot store it"),
        (None, "missing id"), ("3", "unparseable updatedAt: 'last tuesday'")]
    assert q(wh, "select watermark from ops.crm_watermarks") == [(datetime(2026, 3, 1, 10, tzinfo=UTC),)]
    assert q(wh, "select rows_read, rows_loaded, rows_quarantined from ops.load_log") == [(4, 1, 3)]


def _meeting(mid: int, contact_ids: list[int], updated: datetime) -> dict:
    obj = {"id": str(mid), "properties": {"hs_timestamp": iso(updated), "hs_meeting_title": f"Demo {mid}",
                                          "hs_meeting_outcome": "SCHEDULED", "hs_lastmodifieddate": iso(updated)},
           "createdAt": iso(updated), "updatedAt": iso(updated), "archived": False}
    if contact_ids:
        obj["associations"] = {"contacts": {"results": [{"id": str(c), "type": "meeting_to_contact"}
                                                        for c in contact_ids]}}
    return obj


def test_daily_sync_of_an_associated_object_searches_the_window_and_reads_its_associations(wh, sandbox):
    """Meetings carry their contacts. The first sync lists every meeting; a daily one searches the window and reads
    only those meetings' contacts with the associations batch read, in the list endpoint's shape: same records,
    a request per page instead of one per 100 meetings of the whole CRM."""
    load_objects(sandbox.state_path, "meetings", [_meeting(700 + i, [1000 + i % 20] + ([1010] if i == 2 else []),
                                                           DAY1 + timedelta(minutes=i)) for i in range(150)]
                 + [_meeting(900, [], DAY1)])
    with client_for(sandbox) as client:
        first = crm_api.sync_crm(wh.conninfo("loader"), client, interval_end=END1, objects=["meetings"])
    assert first["objects"]["meetings"]["rows_loaded"] == 151

    sandbox.clock.set(END1 + timedelta(hours=5))
    for mid in ("702", "705", "900"):
        patch(sandbox.url, "meetings", mid, {"hs_meeting_outcome": "COMPLETED"})
    sandbox.app.stats.reset()
    with client_for(sandbox) as client:
        second = crm_api.sync_crm(wh.conninfo("loader"), client, interval_end=END2, objects=["meetings"])
    assert second["objects"]["meetings"]["rows_loaded"] == 3
    assert sandbox.stats()["by_path"] == {
        "POST /crm/v3/objects/meetings/search": {"200": 1},
        "POST /crm/v3/associations/meetings/contacts/batch/read": {"207": 1},  # meeting 900 has none
        "GET /crm/v3/objects/meetings": {"200": 1},  # archived=true: archived records are listed
    }
    loaded = dict(q(wh, "select record_id, record->'associations' from raw.crm_meetings where _batch_id = %s",
                    [second["objects"]["meetings"]["batch_id"]]))
    listed = [o for after in ("0", "800") for o in httpx.get(
        f"{sandbox.url}/crm/v3/objects/meetings", params={"associations": "contacts", "limit": 100, "after": after},
        headers={"Authorization": f"Bearer {TOKEN}"}).json()["results"]]
    assert len(listed) == 151
    from_list = {o["id"]: o.get("associations") for o in listed if o["id"] in loaded}
    assert loaded == from_list == {
        "702": {"contacts": {"results": [{"id": "1002", "type": "meeting_to_contact"},
                                         {"id": "1010", "type": "meeting_to_contact"}]}},
        "705": {"contacts": {"results": [{"id": "1005", "type": "meeting_to_contact"}]}},
        "900": None,
    }
