"""Rate limiting, fault injection, the control endpoints and request statistics."""

from __future__ import annotations

import pytest
import requests
from handoff.crm_sandbox import Faults, start_sandbox
from hubspot import HubSpot
from hubspot.crm.contacts import ApiException
from sandbox_support import TOKEN, Http
from urllib3.util.retry import Retry


@pytest.fixture
def limited(state_path, clock):
    handle = start_sandbox(state_path, token=TOKEN, rate_limit=(5, 10), daily_limit=1000, clock=clock)
    yield handle
    handle.stop()


def test_rate_limit_429_after_n_requests_in_the_window(limited, clock):
    http = Http(limited.url)
    remaining = []
    for _ in range(5):
        response = http.get("/crm/v3/objects/contacts", limit=1)
        assert response.status_code == 200
        assert response.headers["X-HubSpot-RateLimit-Max"] == "5"
        assert response.headers["X-HubSpot-RateLimit-Interval-Milliseconds"] == "10000"
        remaining.append(response.headers["X-HubSpot-RateLimit-Remaining"])
    assert remaining == ["4", "3", "2", "1", "0"]
    clock.advance(4)
    response = http.get("/crm/v3/objects/contacts", limit=1)
    assert response.status_code == 429
    body = response.json()
    assert body["status"] == "error" and body["errorType"] == "RATE_LIMIT"
    assert body["policyName"] == "TEN_SECONDLY_ROLLING"
    assert body["message"] == "You have reached your ten_secondly_rolling limit."
    assert body["correlationId"]
    assert response.headers["Retry-After"] == "6"
    assert response.headers["X-HubSpot-RateLimit-Remaining"] == "0"
    assert response.headers["X-HubSpot-RateLimit-Daily"] == "1000"
    assert response.headers["X-HubSpot-RateLimit-Daily-Remaining"] == "995"
    # Without retry=..., urllib3's default Retry makes the SDK sleep Retry-After and retry a 429 3 times.
    with pytest.raises(ApiException) as excinfo:
        HubSpot(access_token=TOKEN, host=limited.url, retry=Retry(0)).crm.contacts.basic_api.get_page()
    assert excinfo.value.status == 429
    clock.advance(6)  # the first five requests leave the rolling window
    response = http.get("/crm/v3/objects/contacts", limit=1)
    assert response.status_code == 200 and response.headers["X-HubSpot-RateLimit-Remaining"] == "4"
    assert limited.stats()["by_status"] == {"200": 6, "429": 2}


def test_daily_limit(state_path, clock):
    with start_sandbox(state_path, token=TOKEN, rate_limit=None, daily_limit=2, clock=clock) as handle:
        http = Http(handle.url)
        assert [http.get("/crm/v3/objects/contacts").status_code for _ in range(3)] == [200, 200, 429]
        assert http.get("/crm/v3/objects/contacts").json()["policyName"] == "DAILY"
        clock.advance(86_400)
        assert http.get("/crm/v3/objects/contacts").status_code == 200


def _statuses(handle, n: int = 40) -> list[int]:
    http = Http(handle.url)
    return [http.get("/crm/v3/objects/contacts", limit=1).status_code for _ in range(n)]


def test_faults_are_deterministic_by_seed(sandbox):
    knobs = {"seed": 7, "rate_limit_storm": 0.1, "storm_length": 3, "server_error": 0.15}
    sandbox.set_faults(knobs)
    first = _statuses(sandbox)
    sandbox.set_faults(knobs)
    assert _statuses(sandbox) == first
    assert {200, 429, 503} <= set(first)
    storm_start = first.index(429)
    assert first[storm_start:storm_start + 3] == [429, 429, 429]
    sandbox.set_faults({**knobs, "seed": 8})
    assert _statuses(sandbox) != first


def test_fault_control_endpoint_needs_the_token_and_switches_down(sandbox):
    http = Http(sandbox.url)
    assert Http(sandbox.url, token=None).post("/__sandbox/faults", {"down": True}).status_code == 401
    assert http.post("/__sandbox/faults", {"down": True}).json()["down"] is True
    response = http.get("/crm/v3/objects/contacts")
    assert response.status_code == 503 and response.json()["status"] == "error"
    with pytest.raises(ApiException) as excinfo:
        HubSpot(access_token=TOKEN, host=sandbox.url).crm.contacts.basic_api.get_page()
    assert excinfo.value.status == 503
    assert http.post("/__sandbox/faults", {"down": False}).status_code == 200
    assert http.get("/crm/v3/objects/contacts").status_code == 200
    bad = http.post("/__sandbox/faults", {"explode": 1})
    assert bad.status_code == 400 and "unknown fault knob" in bad.json()["message"]
    assert http.post("/__sandbox/faults", {"server_error": 2}).status_code == 400


def test_timeout_drop_and_late_use_the_injected_sleep(state_path, clock):
    slept: list[float] = []
    faults = Faults(timeout=1.0, timeout_seconds=45)
    with start_sandbox(state_path, token=TOKEN, rate_limit=None, clock=clock, faults=faults,
                       sleep=slept.append) as handle:
        with pytest.raises(requests.ConnectionError):
            Http(handle.url).get("/crm/v3/objects/contacts")
        assert slept == [45.0]
        handle.set_faults(Faults(timeout=1.0, timeout_seconds=45, timeout_mode="late"))
        assert Http(handle.url).get("/crm/v3/objects/contacts").status_code == 200
        assert slept == [45.0, 45.0]
        handle.set_faults(Faults(slow=1.0, slow_ms=250))
        assert Http(handle.url).get("/crm/v3/objects/contacts").status_code == 200
        assert slept[-1] == 0.25
        assert handle.stats()["by_status"] == {"0": 1, "200": 2}  # 0 = dropped without an answer


def _failing_rows(http: Http) -> list[str]:
    body = http.post("/crm/v3/objects/contacts/batch/update", {"inputs": [
        {"id": str(i), "properties": {"jobtitle": "Head of Data"}} for i in range(1, 21)]}).json()
    return sorted(e["context"]["ids"][0] for e in body.get("errors", []))


def test_row_errors_are_a_deterministic_fraction(sandbox):
    http = Http(sandbox.url)
    sandbox.set_faults({"seed": 3, "row_error_rate": 0.3})
    failed = _failing_rows(http)
    assert 2 <= len(failed) <= 12
    sandbox.set_faults({"seed": 3, "row_error_rate": 0.3})
    assert _failing_rows(http) == failed
    sandbox.set_faults({})
    assert _failing_rows(http) == []


def test_stats_count_api_calls_by_path_and_status(sandbox):
    http = Http(sandbox.url)
    assert http.get("/__sandbox/stats").json()["total"] == 0
    http.get("/crm/v3/objects/contacts/1")
    http.get("/crm/v3/objects/contacts/2")
    http.get("/crm/v3/objects/contacts/999999")
    http.post("/crm/v3/objects/contacts/search", {})
    stats = http.get("/__sandbox/stats").json()
    assert stats["total"] == 4
    assert stats["by_path"] == {"GET /crm/v3/objects/contacts/{id}": {"200": 2, "404": 1},
                                "POST /crm/v3/objects/contacts/search": {"200": 1}}
    assert http.post("/__sandbox/stats/reset", {}).json()["total"] == 0
    assert Http(sandbox.url, token=None).get("/__sandbox/stats").status_code == 401


def test_lost_answer_still_applies_the_write(sandbox):
    """The case a push must survive: the task was created but the client never heard back."""
    http = Http(sandbox.url)
    task = {"properties": {"hs_timestamp": "2026-01-02T00:00:00Z", "handoff_dedupe_key": "sql-42"}}
    sandbox.set_faults(Faults(timeout=1.0, timeout_seconds=30, timeout_mode="lost"))
    with pytest.raises(requests.ConnectionError):
        http.post("/crm/v3/objects/tasks", task)
    sandbox.set_faults(None)
    found = http.post("/crm/v3/objects/tasks/search", {"filterGroups": [{"filters": [
        {"propertyName": "handoff_dedupe_key", "operator": "EQ", "value": "sql-42"}]}]}).json()
    assert found["total"] == 1
    assert http.post("/crm/v3/objects/tasks", task).status_code == 409
