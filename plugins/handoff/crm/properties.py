"""The custom CRM properties handoff writes, and creating the missing ones the HubSpot way.

HubSpot refuses a write to a property the account does not have (400 VALIDATION_ERROR, ``PROPERTY_DOESNT_EXIST``),
so before the first push the account needs these four. ``ensure_properties(client)`` reads each with
``GET /crm/v3/properties/{objectType}/{name}`` and creates the missing ones with
``POST /crm/v3/properties/{objectType}``: the private app then needs a scope that may write property definitions
(``crm.schemas.contacts.write`` for contacts). An administrator can create them in HubSpot's settings instead, with
the same internal names and types.
"""

from __future__ import annotations

from typing import Any

from handoff.crm.client import CrmClient
from handoff.crm.errors import CrmError

HANDOFF_PROPERTIES: dict[str, tuple[dict[str, Any], ...]] = {
    "contacts": (
        {"name": "handoff_score", "label": "Handoff score", "type": "number", "fieldType": "number",
         "groupName": "contactinformation", "description": "Lead score when handoff made the contact an SQL."},
        {"name": "handoff_reasons", "label": "Handoff reasons", "type": "string", "fieldType": "textarea",
         "groupName": "contactinformation", "description": "Why handoff made the contact an SQL."},
        {"name": "handoff_sql_at", "label": "Handoff SQL at", "type": "datetime", "fieldType": "date",
         "groupName": "contactinformation", "description": "When handoff made the contact an SQL."},
    ),
    "tasks": (
        {"name": "handoff_dedupe_key", "label": "Handoff dedupe key", "type": "string", "fieldType": "text",
         "groupName": "taskinformation", "hasUniqueValue": True,
         "description": "One task per SQL: the push's idempotency key (unique)."},
    ),
}


def ensure_properties(client: CrmClient) -> list[str]:
    """Create the handoff properties the account lacks; returns the ones created (``objectType.name``)."""
    created: list[str] = []
    for object_type, definitions in HANDOFF_PROPERTIES.items():
        for definition in definitions:
            try:
                client._json("GET", f"/crm/v3/properties/{object_type}/{definition['name']}")
                continue
            except CrmError as exc:
                if exc.status != 404:
                    raise
            client._json("POST", f"/crm/v3/properties/{object_type}", json=definition)
            created.append(f"{object_type}.{definition['name']}")
    return created
