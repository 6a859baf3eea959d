"""The CRM client: retries (429, 5xx), the shared rate limiter, the token's secrecy, owners — against the sandbox."""

from __future__ import annotations

import json
import logging
import threading
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from handoff.crm.client import CrmClient
from handoff.crm.errors import CrmError
from handoff.crm.rate_limit import RateLimiter
from handoff.crm_sandbox import load_objects, start_sandbox

from tests.plugins.crm.sandbox_helpers import TOKEN, contact

T0 = datetime(2026, 3, 1, tzinfo=UTC)


class FakeTime:
    """A clock and a sleep that advances it: waits are computed, never slept."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@pytest.fixture
def sandbox(tmp_path):
    state = tmp_path / "crm.sqlite3"
    load_objects(state, "contacts", [contact(i, T0 + timedelta(minutes=i)) for i in range(5)])
    load_objects(state, "owners", [{"id": "7", "email": "rep@example.org", "firstName": "Rae", "lastName": "Rep",
                                    "userId": 70, "teams": [], "archived": False,
                                    "createdAt": "2026-01-01T00:00:00.000Z", "updatedAt": "2026-02-01T00:00:00.000Z"}])
    handle = start_sandbox(state, port=0, token=TOKEN, rate_limit=None, sleep=lambda s: None)
    yield handle
    handle.stop()


def test_rate_limiter_waits_exactly_what_the_rolling_window_allows():
    t = FakeTime()
    limiter = RateLimiter(4, 2.0, clock=t.clock, sleep=t.sleep)  # 4 requests in any 2 s (+20 ms slack)
    for _ in range(6):
        limiter.acquire()
    assert t.slept == [pytest.approx(2.02)]  # four at once, then the 5th and 6th when the window has rolled on
    limiter.pause(3.0)  # a 429 told us to back off: everyone waits 3 s
    limiter.acquire()
    assert t.slept[1:] == [pytest.approx(3.0)]


def test_rate_limiter_is_shared_safely_between_threads():
    t = FakeTime()
    lock = threading.Lock()

    def sleep(s):
        with lock:
            t.sleep(s)

    limiter = RateLimiter(10, 1.0, clock=t.clock, sleep=sleep)
    granted = []
    threads = [threading.Thread(target=lambda: granted.append(limiter.acquire())) for _ in range(40)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert len(granted) == 40
    assert t.now >= 3.0 - 1e-9  # 40 requests, at most 10 in any second: at least 3 s of (fake) time


def test_retries_429_storm_and_503_then_succeeds(sandbox):
    sandbox.set_faults({"seed": 7, "rate_limit_storm": 0.3, "storm_length": 2})
    t = FakeTime()
    slept = t.slept
    with CrmClient(sandbox.url, TOKEN, sleep=t.sleep,
                   rate_limiter=RateLimiter(1000, 1.0, clock=t.clock, sleep=t.sleep)) as client:
        for _ in range(20):  # twenty reads; about a third start a storm of two 429s
            assert len(list(client.iter_objects("contacts", ["email"]))) == 5
        assert slept.count(1.0) >= 2  # Retry-After (1 s) honoured on every 429
        assert client.requests_sent > 10
        sandbox.set_faults({"down": True})
        with pytest.raises(CrmError, match=r"failed after 3 attempts; last: 503"):
            CrmClient(sandbox.url, TOKEN, sleep=slept.append, max_attempts=3).search_page("contacts", [], 0, 1)
        sandbox.set_faults({})


def test_5xx_backoff_is_exponential_with_jitter():
    calls = []

    def handler(request):
        calls.append(request)
        return httpx.Response(503 if len(calls) < 4 else 200, json={"results": []})

    slept: list[float] = []
    with CrmClient("http://crm.test", TOKEN, transport=httpx.MockTransport(handler), sleep=slept.append,
                   rate_limiter=RateLimiter(1000, 1.0)) as client:
        assert list(client.iter_objects("owners", [])) == []
    assert len(calls) == 4
    assert [0 <= s <= cap for s, cap in zip(slept, [0.5, 1.0, 2.0], strict=True)] == [True, True, True]


def test_client_errors_do_not_retry_and_never_show_the_token(sandbox, caplog):
    caplog.set_level(logging.DEBUG)
    client = CrmClient(sandbox.url, "pat-wrong-secret-123", sleep=lambda s: None)
    with pytest.raises(CrmError) as info:
        list(client.iter_objects("contacts", ["email"]))
    assert info.value.status == 401
    assert "check the handoff_crm connection's token" in str(info.value)
    assert client.requests_sent == 1
    for text in (str(info.value), repr(info.value), repr(client), caplog.text, repr(info.value.body)):
        assert "pat-wrong-secret-123" not in text
    client.close()


def test_owners_and_search_window(sandbox):
    with CrmClient(sandbox.url, TOKEN, sleep=lambda s: None) as client:
        assert [o["email"] for o in client.iter_objects("owners", [])] == ["rep@example.org"]
        got = list(client.iter_objects("contacts", ["email"], updated_since=T0 + timedelta(minutes=1),
                                       updated_before=T0 + timedelta(minutes=3)))
    assert [o["id"] for o in got] == ["1002", "1003"]  # (since, before]: 1001 is excluded, 1003 included


@pytest.mark.parametrize(("answer", "error"), [
    ({"results": [{"from": {"id": "7"}, "to": [{"id": "1", "type": "deal_to_contact"}],
                   "paging": {"next": {"after": "MTAw"}}}]}, "deals 7 has more contacts associations than one page"),
    ({"results": [], "numErrors": 1, "errors": [{"status": "error", "category": "RATE_LIMITS",
                                                 "message": "try again", "context": {"fromObjectId": ["8"]}}]},
     "1 error(s), first: RATE_LIMITS: try again {'fromObjectId': ['8']}"),
])
def test_associations_read_fails_rather_than_load_a_record_without_them(answer, error):
    """A deal loaded without its contacts would replace its correct version downstream: an association answer the
    client cannot take whole (more than one page, an error other than "none found") fails the read."""
    sent: list[dict] = []

    def handler(request):
        sent.append(json.loads(request.content))
        return httpx.Response(207, json={"status": "COMPLETE", **answer})

    with CrmClient("http://crm.test", TOKEN, transport=httpx.MockTransport(handler), sleep=lambda s: None,
                   rate_limiter=RateLimiter(1000, 1.0)) as client, pytest.raises(CrmError) as info:
        client.read_associations("deals", "contacts", ["7", "8", "7"])
    assert error in str(info.value)
    assert sent == [{"inputs": [{"id": "7"}, {"id": "8"}]}]  # each id once


def test_associations_read_takes_none_found_as_no_associations():
    def handler(request):
        return httpx.Response(207, json={
            "status": "COMPLETE", "results": [{"from": {"id": "7"}, "to": [{"id": "1", "type": "deal_to_contact"}]}],
            "numErrors": 1, "errors": [{"status": "error", "category": "OBJECT_NOT_FOUND",
                                        "subCategory": "crm.associations.NO_ASSOCIATIONS_FOUND",
                                        "message": "No contacts is associated with deals 8.",
                                        "context": {"fromObjectId": ["8"]}}]})

    with CrmClient("http://crm.test", TOKEN, transport=httpx.MockTransport(handler), sleep=lambda s: None,
                   rate_limiter=RateLimiter(1000, 1.0)) as client:
        assert client.read_associations("deals", "contacts", ["7", "8"]) == {
            "7": [{"id": "1", "type": "deal_to_contact"}]}


@pytest.fixture
def paced(tmp_path):
    """A sandbox and a client on one fake clock (waits advance it): HubSpot's search limit, 5 a second, holds."""
    t = FakeTime()
    t.now = T0.timestamp()
    state = tmp_path / "paced.sqlite3"
    load_objects(state, "contacts", [contact(i, T0 + timedelta(minutes=i)) for i in range(120)])
    handle = start_sandbox(state, port=0, token=TOKEN, rate_limit=(100, 10), daily_limit=None, clock=t.clock,
                           sleep=lambda s: None)
    client = CrmClient(handle.url, TOKEN, sleep=t.sleep, rate_limiter=RateLimiter(100, 10.0, clock=t.clock,
                                                                                  sleep=t.sleep))
    yield handle, client, t
    client.close()
    handle.stop()


def test_batch_read_with_history_goes_in_fifties(paced):
    handle, client, _ = paced
    ids = [str(1000 + i) for i in range(120)]
    got = client.batch_read("contacts", ids, ["email"], properties_with_history=["lifecyclestage"])
    assert [o["id"] for o in got] == ids
    assert all(o["propertiesWithHistory"]["lifecyclestage"][0]["value"] == "lead" for o in got)
    assert handle.stats()["by_path"] == {"POST /crm/v3/objects/contacts/batch/read": {"200": 3}}  # 50 + 50 + 20
    client.batch_read("contacts", ids, ["email"])
    assert handle.stats()["by_path"]["POST /crm/v3/objects/contacts/batch/read"] == {"200": 5}  # 100 + 20


def test_searches_are_paced_at_five_a_second(paced):
    handle, client, t = paced
    start = t.now
    lo, hi = int(T0.timestamp() * 1000), int((T0 + timedelta(days=1)).timestamp() * 1000)
    totals = [client.search_page("contacts", ["email"], lo, hi, limit=1)["total"] for _ in range(12)]
    assert totals == [120] * 12
    assert handle.stats()["by_path"] == {"POST /crm/v3/objects/contacts/search": {"200": 12}}
    assert handle.app.search_limiter.refused == 0
    assert t.now - start == pytest.approx(2 * 1.111)  # 5 at once, 5 more 1.1 s (+11 ms slack) later, then 2


def test_a_search_429_is_retried_after_a_second(paced):
    """HubSpot's search 429 (policyName SECONDLY) carries no Retry-After and no rate-limit headers: the client waits
    a second on its search limiter and sends again."""
    handle, _, t = paced
    unpaced = CrmClient(handle.url, TOKEN, sleep=t.sleep, rate_limiter=RateLimiter(100, 10.0, clock=t.clock,
                                                                                   sleep=t.sleep),
                        search_rate_limiter=RateLimiter(1000, 1.0, clock=t.clock, sleep=t.sleep))
    lo, hi = int(T0.timestamp() * 1000), int((T0 + timedelta(days=1)).timestamp() * 1000)
    for _ in range(7):
        assert unpaced.search_page("contacts", ["email"], lo, hi, limit=1)["total"] == 120
    assert handle.stats()["by_path"] == {"POST /crm/v3/objects/contacts/search": {"200": 7, "429": 1}}
    assert t.slept == [1.0]
    unpaced.close()


def test_a_daily_429_is_not_retried(tmp_path):
    state = tmp_path / "daily.sqlite3"
    load_objects(state, "contacts", [contact(1, T0)])
    with start_sandbox(state, token=TOKEN, rate_limit=None, daily_limit=1, sleep=lambda s: None) as handle, \
            CrmClient(handle.url, TOKEN, sleep=lambda s: None) as client:
        assert len(client.batch_read("contacts", ["1001"], ["email"])) == 1
        with pytest.raises(CrmError) as info:
            client.batch_read("contacts", ["1001"], ["email"])
        assert info.value.status == 429 and info.value.body["policyName"] == "DAILY"
        assert client.requests_sent == 2  # one attempt: the day's quota does not come back in seconds
