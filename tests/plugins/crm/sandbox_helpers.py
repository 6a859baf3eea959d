"""Helpers for tests against the CRM sandbox: objects in the HubSpot v3 shape, a controllable clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx

TOKEN = "pat-na1-test-secret-token"


class Clock:
    """The sandbox's clock (epoch seconds), set by the test: drives updatedAt of every write."""

    def __init__(self, start: datetime) -> None:
        self.now = start.timestamp()

    def set(self, when: datetime) -> None:
        self.now = when.timestamp()

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        """A wait that costs no real time: the clock moves on instead (so a client's pacing and the sandbox's
        rate windows agree without the test sleeping)."""
        self.now += max(1e-6, seconds)


def iso(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def contact(i: int, updated: datetime, *, stage: str = "lead") -> dict:
    created = updated - timedelta(days=3)
    return {
        "id": str(1000 + i),
        "properties": {"email": f"person{i}@example.org", "firstname": f"P{i}", "lastname": "Tester",
                       "lifecyclestage": stage, "createdate": iso(created), "lastmodifieddate": iso(updated)},
        "propertiesWithHistory": {"lifecyclestage": [
            {"value": stage, "timestamp": iso(created), "sourceType": "FORM", "sourceId": None,
             "updatedByUserId": None}]},
        "createdAt": iso(created), "updatedAt": iso(updated), "archived": False,
    }


def patch(url: str, object_type: str, object_id: str, properties: dict) -> dict:
    resp = httpx.patch(f"{url}/crm/v3/objects/{object_type}/{object_id}", json={"properties": properties},
                       headers={"Authorization": f"Bearer {TOKEN}"})
    resp.raise_for_status()
    return resp.json()


def archive(url: str, object_type: str, object_id: str) -> None:
    resp = httpx.delete(f"{url}/crm/v3/objects/{object_type}/{object_id}",
                        headers={"Authorization": f"Bearer {TOKEN}"})
    assert resp.status_code == 204, resp.text
