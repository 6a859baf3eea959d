"""Shared helpers for the CRM sandbox tests (seed data, a fake clock, raw HTTP)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import requests

PLUGINS = Path(__file__).resolve().parents[3] / "plugins"
if str(PLUGINS) not in sys.path:
    sys.path.insert(0, str(PLUGINS))

from handoff.crm_sandbox import create_handoff_properties, load_objects  # noqa: E402

TOKEN = "test-token"
T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z


class FakeClock:
    """Epoch seconds that only move when a test says so."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def owner(owner_id: int, archived: bool = False) -> dict[str, Any]:
    return {"id": str(owner_id), "email": f"rep{owner_id}@example.com", "firstName": "Rep", "lastName": str(owner_id),
            "userId": 9000 + owner_id, "teams": [{"id": "1", "name": "Sales", "primary": True}],
            "archived": archived, "createdAt": "2025-01-01T00:00:00Z", "updatedAt": "2025-01-01T00:00:00Z"}


def contact(contact_id: int, *, updated: str = "2025-06-01T00:00:00Z", stage: str = "lead",
            owner_id: int | None = 1, company_id: int | None = None, archived: bool = False) -> dict[str, Any]:
    props = {"email": f"person{contact_id}@example.com", "firstname": f"First{contact_id}",
             "lastname": f"Last{contact_id}", "jobtitle": "Engineer", "lifecyclestage": stage,
             "hubspot_owner_id": str(owner_id) if owner_id else None, "createdate": "2025-01-01T00:00:00Z",
             "lastmodifieddate": updated, "hs_analytics_source": "ORGANIC_SEARCH"}
    if company_id:
        props["associatedcompanyid"] = str(company_id)
    obj: dict[str, Any] = {
        "id": str(contact_id), "properties": props, "createdAt": "2025-01-01T00:00:00Z", "updatedAt": updated,
        "archived": archived,
        "propertiesWithHistory": {"lifecyclestage": [
            {"value": stage, "timestamp": "2025-03-01T00:00:00Z", "sourceType": "CRM_UI", "sourceId": "userId:9001",
             "updatedByUserId": 9001},
            {"value": "subscriber", "timestamp": "2025-01-01T00:00:00Z", "sourceType": "FORM", "sourceId": None,
             "updatedByUserId": None},
        ]},
    }
    if archived:
        obj["archivedAt"] = updated
    return obj


def company(company_id: int) -> dict[str, Any]:
    return {"id": str(company_id), "properties": {"name": f"Company {company_id}", "domain": f"c{company_id}.example",
                                                  "industry": "COMPUTER_SOFTWARE", "numberofemployees": "120"},
            "createdAt": "2025-01-01T00:00:00Z", "updatedAt": "2025-02-01T00:00:00Z", "archived": False}


def meeting(meeting_id: int, contact_id: int) -> dict[str, Any]:
    return {"id": str(meeting_id),
            "properties": {"hs_timestamp": "2025-05-01T10:00:00Z", "hs_meeting_title": "Demo",
                           "hs_meeting_outcome": "COMPLETED", "hubspot_owner_id": "1"},
            "createdAt": "2025-04-01T00:00:00Z", "updatedAt": "2025-05-01T10:00:00Z", "archived": False,
            "associations": {"contacts": {"results": [{"id": str(contact_id), "type": "meeting_to_contact"}]}}}


def seed_small(state: Path) -> None:
    """Owners 1-3 (3 archived), companies 500-501, contacts 1-25 updated over 25 days, 26 archived,
    one meeting with contact 1; handoff's custom properties exist (the account is set up for handoff)."""
    create_handoff_properties(state)
    load_objects(state, "owners", [owner(1), owner(2), owner(3, archived=True)])
    load_objects(state, "companies", [company(500), company(501)])
    load_objects(state, "contacts", [
        contact(i, updated=f"2025-06-{i:02d}T12:00:00Z", company_id=500 if i % 2 else None) for i in range(1, 26)
    ] + [contact(26, archived=True, updated="2025-06-20T00:00:00Z")])
    load_objects(state, "meetings", [meeting(700, 1)])



class Http:
    """Raw HTTP against the sandbox, for shapes the SDK hides (status codes, headers, bodies)."""

    def __init__(self, url: str, token: str | None = TOKEN) -> None:
        self.url = url
        self.session = requests.Session()
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"

    def get(self, path: str, **params: Any) -> requests.Response:
        return self.session.get(self.url + path, params=params, timeout=10)

    def post(self, path: str, body: Any) -> requests.Response:
        return self.session.post(self.url + path, json=body, timeout=10)

    def patch(self, path: str, body: Any, **params: Any) -> requests.Response:
        return self.session.patch(self.url + path, json=body, params=params, timeout=10)

    def delete(self, path: str) -> requests.Response:
        return self.session.delete(self.url + path, timeout=10)
