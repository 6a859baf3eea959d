"""Pure parts of the push: the rate-limit floor, payloads, read-back comparison, the sliding-window limiter."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from handoff.crm.rate_limit import RateLimiter
from handoff.push import floor_seconds, requests_needed
from handoff.push.payloads import QueueRow, contact_properties, task_properties
from handoff.push.readback import _diff

from tests.plugins.push.support import FakeClock


def test_the_floor_counts_five_batch_calls_per_100_sqls_plus_lookups():
    assert requests_needed(1) == 5
    assert requests_needed(250) == 15
    assert requests_needed(10_000) == 500
    assert requests_needed(10_000, in_doubt=150) == 502
    assert requests_needed(10_000, readback=False) == 300
    assert floor_seconds(10_000) == 50.0               # 500 requests at 100 per 10 s
    assert floor_seconds(1_000, rate_limit=(100, 1.0)) == 0.5


def test_payloads_carry_the_sla_due_date_and_strings_only():
    row = QueueRow(contact_id="wh-7", crm_contact_id="7", owner_id="2",
                   sql_at=datetime(2026, 3, 1, 23, 30, tzinfo=UTC), dedupe_key="k7", score=Decimal("81.500"),
                   rule_ids="demo_request;pricing_page", reasons=None, top_content=None)
    assert contact_properties(row) == {"lifecyclestage": "salesqualifiedlead", "handoff_score": "81.5",
                                       "handoff_reasons": "demo_request;pricing_page",
                                       "handoff_sql_at": "2026-03-01T23:30:00.000Z"}
    task = task_properties(row, 36)
    assert task["hs_timestamp"] == "2026-03-03T11:30:00.000Z"
    assert task["hs_task_subject"] == "Follow up new SQL within 36h (score 81.5)"
    assert "Rules that fired: demo_request, pricing_page" in task["hs_task_body"]
    assert "Top content: none recorded" in task["hs_task_body"]
    assert all(isinstance(v, str) for v in task.values())


def test_read_back_tolerates_forward_moves_and_formats_but_not_changes():
    sent = {"lifecyclestage": "salesqualifiedlead", "handoff_score": "81.5",
            "handoff_sql_at": "2026-03-01T23:30:00.000Z", "handoff_reasons": "demo"}
    same = {"lifecyclestage": "opportunity", "handoff_score": "81.50", "handoff_sql_at": "2026-03-01T23:30:00Z",
            "handoff_reasons": "demo"}
    assert _diff(sent, same) == {}
    changed = dict(same, lifecyclestage="lead", handoff_reasons="")
    assert _diff(sent, changed) == {"lifecyclestage": {"sent": "salesqualifiedlead", "read": "lead"},
                                    "handoff_reasons": {"sent": "demo", "read": ""}}
    assert _diff(sent, None) == {"missing": {"sent": "record", "read": None}}


def test_the_client_limiter_never_lets_more_than_max_through_in_any_window():
    clock = FakeClock()
    limiter = RateLimiter(100, 10.0, clock=clock, sleep=clock.sleep)
    sent = []
    for _ in range(350):
        limiter.acquire()
        sent.append(clock())
    for i in range(len(sent) - 100):
        assert sent[i + 100] - sent[i] >= 10.0
    assert sent[-1] - sent[0] < 30.2  # bursts of 100 at 0, 10, 20, 30 s (+ slack): no longer than it must
    limiter.pause(5)
    before = clock()
    limiter.acquire()
    assert clock() - before >= 5
