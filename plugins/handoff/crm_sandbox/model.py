"""HubSpot CRM v3 vocabulary the sandbox reproduces: object types, default properties,
lifecycle-stage order, association type ids, time formats and property-write validation.

Pure functions and constants only; no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

OBJECT_TYPES: tuple[str, ...] = ("contacts", "companies", "deals", "meetings", "calls", "tasks")

# HubSpot accepts the plural name, the singular name and the object type id in paths.
_TYPE_ALIASES = {
    "contact": "contacts", "0-1": "contacts",
    "company": "companies", "0-2": "companies",
    "deal": "deals", "0-3": "deals",
    "meeting": "meetings", "0-47": "meetings",
    "call": "calls", "0-48": "calls",
    "task": "tasks", "0-27": "tasks",
}

# The property mirroring the record's updatedAt / createdAt, per object type.
LASTMODIFIED_PROPERTY = {t: "hs_lastmodifieddate" for t in OBJECT_TYPES} | {"contacts": "lastmodifieddate"}
CREATEDATE_PROPERTY = {
    "contacts": "createdate", "companies": "createdate", "deals": "createdate",
    "meetings": "hs_createdate", "calls": "hs_createdate", "tasks": "hs_createdate",
}

# Properties HubSpot returns when the request names none (GET list/read and search).
DEFAULT_PROPERTIES = {
    "contacts": ("createdate", "email", "firstname", "hs_object_id", "lastmodifieddate", "lastname"),
    "companies": ("createdate", "domain", "hs_lastmodifieddate", "hs_object_id", "name"),
    "deals": ("amount", "closedate", "createdate", "dealname", "dealstage", "hs_lastmodifieddate",
              "hs_object_id", "pipeline"),
    "meetings": ("hs_createdate", "hs_lastmodifieddate", "hs_object_id"),
    "calls": ("hs_createdate", "hs_lastmodifieddate", "hs_object_id"),
    "tasks": ("hs_createdate", "hs_lastmodifieddate", "hs_object_id"),
}

# Properties HubSpot returns even when the request names others.
ALWAYS_PROPERTIES = {t: ("hs_object_id", CREATEDATE_PROPERTY[t], LASTMODIFIED_PROPERTY[t]) for t in OBJECT_TYPES}

LIFECYCLE_ORDER: tuple[str, ...] = (
    "subscriber", "lead", "marketingqualifiedlead", "salesqualifiedlead", "opportunity", "customer", "evangelist",
)
LIFECYCLE_VALUES = frozenset(LIFECYCLE_ORDER) | {"other"}

# The stage-date properties HubSpot keeps on contacts: "Became a ... date" and "Date entered ...", each set
# (ISO-8601) when lifecyclestage first enters the stage.
BECAME_DATE = {stage: f"hs_lifecyclestage_{stage}_date" for stage in sorted(LIFECYCLE_VALUES)}
DATE_ENTERED = {stage: f"hs_v2_date_entered_{stage}" for stage in sorted(LIFECYCLE_VALUES)}

MERGED_IDS_PROPERTY = "hs_merged_object_ids"

READ_ONLY_PROPERTIES = frozenset({"hs_object_id", "lastmodifieddate", "hs_lastmodifieddate", "hs_createdate",
                                  MERGED_IDS_PROPERTY, *DATE_ENTERED.values()})

# HubSpot's default properties (name -> type) that the project and its tests use. Anything else must be created
# (POST /crm/v3/properties/{objectType}) before a write may set it: HubSpot answers 400 PROPERTY_DOESNT_EXIST.
_COMMON = {"hs_object_id": "number", "hubspot_owner_id": "enumeration", MERGED_IDS_PROPERTY: "enumeration"}
_ENGAGEMENT = {**_COMMON, "hs_timestamp": "datetime", "hs_createdate": "datetime", "hs_lastmodifieddate": "datetime"}
HUBSPOT_PROPERTIES: dict[str, dict[str, str]] = {
    "contacts": {**_COMMON, **dict.fromkeys((
        "email", "firstname", "lastname", "phone", "mobilephone", "jobtitle", "company", "website", "address",
        "city", "state", "zip", "country", "hs_additional_emails", "hs_analytics_source_data_1",
        "hs_analytics_source_data_2", "hs_persona"), "string"),
        **dict.fromkeys(("associatedcompanyid",), "number"),
        **dict.fromkeys(("lifecyclestage", "hs_lead_status", "hs_analytics_source", "hs_email_optout",
                         "hs_email_bounce"), "enumeration"),
        **dict.fromkeys(("createdate", "lastmodifieddate", *BECAME_DATE.values(), *DATE_ENTERED.values()),
                        "datetime")},
    "companies": {**_COMMON, **dict.fromkeys((
        "name", "domain", "website", "phone", "city", "state", "country", "description"), "string"),
        **dict.fromkeys(("numberofemployees", "annualrevenue"), "number"),
        **dict.fromkeys(("industry", "lifecyclestage"), "enumeration"),
        **dict.fromkeys(("createdate", "hs_lastmodifieddate"), "datetime")},
    "deals": {**_COMMON, **dict.fromkeys(("dealname", "description"), "string"), "amount": "number",
              **dict.fromkeys(("pipeline", "dealstage", "dealtype"), "enumeration"),
              **dict.fromkeys(("createdate", "closedate", "hs_lastmodifieddate"), "datetime")},
    "meetings": {**_ENGAGEMENT, **dict.fromkeys(("hs_meeting_title", "hs_meeting_body", "hs_meeting_location",
                                                 "hs_internal_meeting_notes"), "string"),
                 "hs_meeting_outcome": "enumeration",
                 **dict.fromkeys(("hs_meeting_start_time", "hs_meeting_end_time"), "datetime")},
    "calls": {**_ENGAGEMENT, **dict.fromkeys(("hs_call_title", "hs_call_body", "hs_call_to_number",
                                              "hs_call_from_number", "hs_call_recording_url"), "string"),
              "hs_call_duration": "number",
              **dict.fromkeys(("hs_call_direction", "hs_call_disposition", "hs_call_status"), "enumeration")},
    "tasks": {**_ENGAGEMENT, **dict.fromkeys(("hs_task_subject", "hs_task_body"), "string"),
              **dict.fromkeys(("hs_task_status", "hs_task_priority", "hs_task_type"), "enumeration"),
              "hs_task_reminders": "enumeration"},
}
PROPERTY_TYPES = frozenset({"string", "number", "date", "datetime", "enumeration", "bool"})
FIELD_TYPES = frozenset({"text", "textarea", "number", "date", "select", "radio", "checkbox", "booleancheckbox",
                         "phonenumber", "html", "file", "calculation_equation"})

# Datetime properties whose epoch-millisecond input HubSpot stores and returns as ISO-8601.
DATETIME_PROPERTIES = frozenset({"hs_timestamp", "closedate", "createdate"})

# Engagements require hs_timestamp on create, as in HubSpot.
REQUIRES_TIMESTAMP = frozenset({"meetings", "calls", "tasks"})

ENUMS: dict[str, dict[str, frozenset[str]]] = {
    "contacts": {"lifecyclestage": LIFECYCLE_VALUES},
    "tasks": {
        "hs_task_status": frozenset({"NOT_STARTED", "IN_PROGRESS", "WAITING", "COMPLETED", "DEFERRED"}),
        "hs_task_priority": frozenset({"NONE", "LOW", "MEDIUM", "HIGH"}),
        "hs_task_type": frozenset({"EMAIL", "CALL", "TODO", "LINKED_IN"}),
    },
}

# Unique-value properties (a second record with the same value is a 409 CONFLICT).
UNIQUE_PROPERTIES = {"tasks": "handoff_dedupe_key"}

# HUBSPOT_DEFINED association type ids: (from_type, type_id) -> (to_type, label).
ASSOCIATION_TYPES: dict[tuple[str, int], tuple[str, str]] = {
    ("contacts", 279): ("companies", "contact_to_company"),
    ("contacts", 1): ("companies", "contact_to_company"),
    ("contacts", 4): ("deals", "contact_to_deal"),
    ("contacts", 199): ("meetings", "contact_to_meeting"),
    ("contacts", 193): ("calls", "contact_to_call"),
    ("contacts", 203): ("tasks", "contact_to_task"),
    ("companies", 280): ("contacts", "company_to_contact"),
    ("companies", 2): ("contacts", "company_to_contact"),
    ("companies", 342): ("deals", "company_to_deal"),
    ("deals", 3): ("contacts", "deal_to_contact"),
    ("deals", 341): ("companies", "deal_to_company"),
    ("deals", 5): ("companies", "deal_to_company"),
    ("meetings", 200): ("contacts", "meeting_to_contact"),
    ("calls", 194): ("contacts", "call_to_contact"),
    ("tasks", 204): ("contacts", "task_to_contact"),
    ("tasks", 192): ("companies", "task_to_company"),
    ("tasks", 216): ("deals", "task_to_deal"),
}


def canonical_type(name: str) -> str | None:
    """The plural object type for a path segment, or None when HubSpot would not know it."""
    name = name.lower()
    if name in OBJECT_TYPES:
        return name
    return _TYPE_ALIASES.get(name)


def singular(object_type: str) -> str:
    return {"companies": "company"}.get(object_type, object_type.rstrip("s"))


def reverse_label(label: str) -> str:
    """`meeting_to_contact` -> `contact_to_meeting`."""
    left, sep, right = label.partition("_to_")
    return f"{right}_to_{left}" if sep else label


# --------------------------------------------------------------------------- time

def iso_from_ms(ms: int | float) -> str:
    """Epoch milliseconds -> HubSpot's ISO-8601 form (`2024-05-01T10:00:00.000Z`)."""
    dt = datetime.fromtimestamp(int(ms) / 1000, tz=UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{int(ms) % 1000:03d}Z"


def parse_datetime_ms(value: Any) -> int | None:
    """ISO-8601 (with Z or offset, or a bare date) or epoch milliseconds -> epoch ms; None if neither."""
    if value is None:
        return None
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return int(value)
    text = str(value).strip()
    if not text:
        return None
    if text.lstrip("-").isdigit():
        return int(text)
    if "-" not in text:
        return None
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(math.floor(dt.timestamp() * 1000 + 0.5))


def as_number(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


# --------------------------------------------------------------------------- property writes

def to_property_string(value: Any) -> str:
    """HubSpot stores every property value as a string; null clears the value."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


@dataclass
class PropertyProblem:
    """One invalid property value, in the shape HubSpot lists inside a VALIDATION_ERROR."""

    name: str
    code: str
    message: str

    def as_validation_result(self) -> dict[str, Any]:
        return {"isValid": False, "message": self.message, "error": self.code, "name": self.name,
                "localizedErrorMessage": self.message}


@dataclass
class WriteCheck:
    """The outcome of validating one row's property writes against the current record."""

    values: dict[str, str] = field(default_factory=dict)
    problems: list[PropertyProblem] = field(default_factory=list)


def check_property_writes(
    object_type: str,
    incoming: dict[str, Any],
    current: dict[str, Any] | None,
    owner_exists: Callable[[str], bool],
    property_type: Callable[[str], str | None] | None = None,
) -> WriteCheck:
    """Normalise and validate one row's property writes the way HubSpot does.

    `current` is the record's stored properties (None on create); `owner_exists(owner_id)`
    says whether an active owner has that id; `property_type(name)` is the property's type, or None
    when the object type has no such property (HubSpot's PROPERTY_DOESNT_EXIST).
    """
    check = WriteCheck()
    enums = ENUMS.get(object_type, {})
    for name, raw in incoming.items():
        value = to_property_string(raw)
        kind = property_type(name) if property_type is not None else None
        if property_type is not None and kind is None:
            check.problems.append(PropertyProblem(name, "PROPERTY_DOESNT_EXIST", f'Property "{name}" does not exist'))
            continue
        if name in READ_ONLY_PROPERTIES or (current is not None and name == CREATEDATE_PROPERTY[object_type]
                                            and object_type != "contacts"):
            check.problems.append(PropertyProblem(name, "READ_ONLY_VALUE", f"{name} is a read only property; "
                                                  "its value cannot be set."))
            continue
        if (name in DATETIME_PROPERTIES or kind == "datetime") and value:
            ms = parse_datetime_ms(value)
            if ms is None:
                check.problems.append(PropertyProblem(
                    name, "INVALID_DATE", f"{value} is not a valid datetime (expected epoch milliseconds or "
                    "ISO-8601)."))
                continue
            value = iso_from_ms(ms)
        if name in enums and value and value not in enums[name]:
            allowed = ", ".join(sorted(enums[name]))
            check.problems.append(PropertyProblem(
                name, "INVALID_OPTION", f"{value} was not one of the allowed options: [{allowed}]"))
            continue
        if name == "hubspot_owner_id" and value and not owner_exists(value):
            check.problems.append(PropertyProblem(name, "INVALID_OWNER_ID", f"{value} is not a valid owner id"))
            continue
        if object_type == "contacts" and name == "lifecyclestage" and value:
            old = (current or {}).get("lifecyclestage") or ""
            if old in LIFECYCLE_ORDER and value in LIFECYCLE_ORDER and \
                    LIFECYCLE_ORDER.index(value) < LIFECYCLE_ORDER.index(old):
                check.problems.append(PropertyProblem(
                    name, "INVALID_LIFECYCLE_STAGE",
                    f"lifecyclestage can only move forward: {value} is before the current stage {old}. "
                    "Clear the property (set it to \"\") in a separate request first to move it backward."))
                continue
        check.values[name] = value
    return check


def validation_message(problems: list[PropertyProblem]) -> str:
    return "Property values were not valid: " + orjson.dumps(
        [p.as_validation_result() for p in problems]).decode()


def stage_dates(current: dict[str, Any], stage: str, stamp: str) -> dict[str, str]:
    """The stage-date properties a move of lifecyclestage to `stage` sets: "Became a ... date" and "Date
    entered ...", only the first time the contact enters that stage (a later re-entry keeps the first date)."""
    if stage not in LIFECYCLE_VALUES:
        return {}
    return {prop: stamp for prop in (BECAME_DATE[stage], DATE_ENTERED[stage]) if not current.get(prop)}


def stage_dates_from_history(entries: list[tuple[int, str | None]]) -> dict[str, str]:
    """Stage dates from a lifecyclestage history given as (epoch ms, value), in any order."""
    out: dict[str, str] = {}
    for ts_ms, value in sorted(entries, key=lambda e: e[0]):
        if value:
            for prop, stamp in stage_dates(out, value, iso_from_ms(ts_ms)).items():
                out[prop] = stamp
    return out


def custom_property_problems(definition: Any, object_type: str) -> list[str]:
    """What is wrong with a `POST /crm/v3/properties/{objectType}` body (empty when it can be created)."""
    if not isinstance(definition, dict):
        return ["the property definition must be a JSON object"]
    problems = []
    for key in ("name", "label", "type", "fieldType", "groupName"):
        if not isinstance(definition.get(key), str) or not definition[key].strip():
            problems.append(f"{key} is required")
    name = str(definition.get("name") or "")
    if name and (not name.replace("_", "").isascii() or not name.replace("_", "").isalnum()
                 or name != name.lower() or name[:1].isdigit()):
        problems.append(f"name {name!r} must be lowercase letters, digits and underscores, not starting with a digit")
    if name.startswith("hs_") or name in HUBSPOT_PROPERTIES.get(object_type, {}):
        problems.append(f"{name} is a HubSpot property name; custom properties cannot use it")
    if definition.get("type") and definition["type"] not in PROPERTY_TYPES:
        problems.append(f"type must be one of {sorted(PROPERTY_TYPES)}")
    if definition.get("fieldType") and definition["fieldType"] not in FIELD_TYPES:
        problems.append(f"fieldType must be one of {sorted(FIELD_TYPES)}")
    if definition.get("type") == "enumeration" and not definition.get("options"):
        problems.append("an enumeration property needs options")
    return problems
