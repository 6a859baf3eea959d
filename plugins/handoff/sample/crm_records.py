"""One contact's CRM side, after its behaviour is settled: lifecycle and lead-status histories, the owner's
calls and meetings, deals, the planted CRM-only cases, and the contact's JSON lines, CSV rows and ground truth."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import orjson

from handoff.sample import vocab
from handoff.sample.activity import Session
from handoff.sample.contact_behaviour import HOUR, ContactBehaviour
from handoff.sample.simulation_tables import SimulationTables
from handoff.sample.world import DAY_MS, Owner

APPEND_NEWLINE = orjson.OPT_APPEND_NEWLINE
HOUR_MS = 3_600_000
CALL_ID_BASE = 50_000_000
MEETING_ID_BASE = 40_000_000
DEAL_ID_BASE = 30_000_000
SALES_CYCLE_DAYS = {"SMB": (10, 45), "Mid-Market": (25, 90), "Enterprise": (50, 160)}
# an SQL's chance of a deal (when it has a company and sales did not reject it): the planted rule effect
DEAL_PROBABILITY = {"decision_download": 0.85, "otherwise": 0.35}
CONNECTED_DISPOSITION_PREFIX = "f240"  # the HubSpot GUID of "Connected" (vocab.CALL_DISPOSITIONS)

# (at ms, value, sourceType, sourceId, updatedByUserId)
HistoryEntry = tuple[int, str, str, str | None, int | None]


@dataclass
class ContactOutput:
    contact: bytes
    contact_row: list
    history_rows: list
    deals: list[bytes]
    deal_rows: list
    meetings: list[bytes]
    meeting_rows: list
    calls: list[bytes]
    call_rows: list
    truth_row: list
    events: list[tuple[int, bytes]]  # (received day, line)
    case: str
    mql_ok: bool
    will_mql: bool
    will_sql: bool


@dataclass
class CrmActivity:
    """What the CRM records about one contact, built up in time order of decisions (not of timestamps)."""
    tables: SimulationTables
    behaviour: ContactBehaviour
    owner_id: str
    owner: Owner | None
    case: str  # normal, or the planted case (a key of ground_truth.json's planted_cases)
    will_sql: bool
    sql_ms: int
    lifecycle: list[HistoryEntry] = field(default_factory=list)
    status: list[HistoryEntry] = field(default_factory=list)
    meetings: list[dict] = field(default_factory=list)
    calls: list[dict] = field(default_factory=list)
    deals: list[dict] = field(default_factory=list)

    def by_owner(self, at_ms: int, value: str) -> HistoryEntry:
        owner = self.owner
        return (at_ms, value, "CRM_UI", owner.email if owner else None, owner.user_id if owner else None)

    def add_call(self, at_ms: int, title: str, inbound: bool = False) -> str | None:
        """A call by the owner; returns its disposition (None: after the end, or no owner)."""
        end_ms, owner, timestamp = self.tables.end_ms, self.owner, self.tables.timestamp
        if at_ms > end_ms or owner is None:
            return None
        disposition = self.behaviour.rng.choices(tuple(vocab.CALL_DISPOSITIONS), (55, 25, 15, 5))[0]
        call_id = str(CALL_ID_BASE + self.behaviour.plan.index * 16 + len(self.calls))
        self.calls.append({"id": call_id, "ms": at_ms, "props": {
            "hs_timestamp": timestamp(at_ms), "hs_call_direction": "INBOUND" if inbound else "OUTBOUND",
            "hs_call_disposition": disposition, "hs_call_title": title, "hubspot_owner_id": owner.id,
            "hs_createdate": timestamp(at_ms + 60_000),
            "hs_lastmodifieddate": timestamp(min(end_ms, at_ms + 300_000))}})
        return disposition

    def add_meeting(self, created_ms: int, at_ms: int, title: str) -> None:
        end_ms, owner, timestamp = self.tables.end_ms, self.owner, self.tables.timestamp
        if at_ms > end_ms or created_ms > end_ms or owner is None:
            return
        outcome = ("SCHEDULED" if at_ms > end_ms - 2 * DAY_MS else
                   self.behaviour.rng.choices(("COMPLETED", "NO_SHOW", "CANCELED"), (72, 15, 13))[0])
        meeting_id = str(MEETING_ID_BASE + self.behaviour.plan.index * 16 + len(self.meetings))
        self.meetings.append({"id": meeting_id, "ms": created_ms, "props": {
            "hs_timestamp": timestamp(at_ms), "hs_meeting_title": title, "hs_meeting_outcome": outcome,
            "hubspot_owner_id": owner.id, "hs_createdate": timestamp(created_ms),
            "hs_lastmodifieddate": timestamp(min(end_ms, max(created_ms, at_ms + HOUR_MS)))}})

    def add_deal(self, created_ms: int, force_won: bool = False) -> bool:
        """A deal with the contact's company (and the lifecycle steps it causes); False when none is made."""
        behaviour, tables = self.behaviour, self.tables
        rng, company, end_ms, timestamp = behaviour.rng, behaviour.company, tables.end_ms, tables.timestamp
        if created_ms > end_ms or self.owner is None or company is None:
            return False
        segment = company.segment
        low, high = vocab.DEAL_AMOUNT[segment]
        amount = int(round(math.exp(rng.uniform(math.log(low), math.log(high))), -2))
        close_ms = created_ms + rng.randint(*SALES_CYCLE_DAYS[segment]) * DAY_MS + rng.randint(0, 8) * HOUR_MS
        won = force_won or rng.random() < 0.38
        if force_won and close_ms > end_ms:
            close_ms = created_ms + rng.randint(3, 10) * DAY_MS
            if close_ms > end_ms:
                return False
        self.lifecycle.append((created_ms, "opportunity", "DEALS", None, None))
        if close_ms <= end_ms:
            stage = "closedwon" if won else "closedlost"
            if won:
                self.lifecycle.append((close_ms, "customer", "DEALS", None, None))
            closedate = timestamp(close_ms)
            modified_ms = close_ms
        else:
            progress = (end_ms - created_ms) / (close_ms - created_ms)
            stage = vocab.DEAL_OPEN_STAGES[min(4, int(progress * 5))]
            closedate = None
            modified_ms = min(end_ms, created_ms + int((end_ms - created_ms) * rng.random()))
        deal_id = str(DEAL_ID_BASE + behaviour.plan.index * 4 + len(self.deals))
        self.deals.append({"id": deal_id, "props": {
            "dealname": f"{company.name} — new business", "pipeline": "default", "dealstage": stage,
            "amount": str(amount), "createdate": timestamp(created_ms), "closedate": closedate,
            "hubspot_owner_id": self.owner.id, "hs_lastmodifieddate": timestamp(modified_ms)}})
        return True


def crm_records(tables: SimulationTables, behaviour: ContactBehaviour, events: list) -> ContactOutput:
    plan, rng, world = behaviour.plan, behaviour.rng, tables.world
    end_ms = tables.end_ms
    owner_id = plan.owner_id
    smb_owners = world.team_owners["SMB"] or world.owners
    if not owner_id and (plan.mql_day >= 0 or plan.sql_day >= 0):
        owner_id = smb_owners[plan.index % len(smb_owners)].id
    owners_by_id = {owner.id: owner for owner in world.owners}
    created_ms = behaviour.created_ms
    first_stage = ("other" if plan.kind == "applicant" else "subscriber" if plan.kind in ("student", "personal")
                   else "lead")
    source = "IMPORT" if plan.channel == "OFFLINE" else "FORM"
    source_id = f"import-{plan.source_data_1}-{plan.create_day:03d}" if source == "IMPORT" else "signup-form"
    case = "normal"
    will_sql = plan.sql_day >= 0
    sql_ms = behaviour.sql_ms if will_sql else -1
    # planted CRM-only cases
    no_mql_business = (plan.kind == "business" and plan.mql_day < 0 and not plan.disqualified
                       and not plan.converts)
    if no_mql_business and rng.random() < 0.03:
        day = plan.create_day + rng.randint(2, 45)
        if day < tables.days:
            case = "skipped_mql_crm_sql"
            will_sql = True
            plan.sql_via = "CRM_UI"
            sql_ms = day * DAY_MS + rng.randrange(9 * HOUR, 18 * HOUR) * 1000
            owner_id = owner_id or smb_owners[plan.index % len(smb_owners)].id
    elif no_mql_business and rng.random() < 0.008:
        case = "deal_without_sql"
        owner_id = owner_id or smb_owners[plan.index % len(smb_owners)].id
    crm = CrmActivity(tables, behaviour, owner_id, owners_by_id.get(owner_id), case, will_sql, sql_ms)
    crm.lifecycle.append((created_ms, first_stage, source, source_id, None))
    crm.status.append((created_ms, "NEW", source, source_id, None))
    _sales_follow_up(crm)
    if crm.case == "deal_without_sql":
        deal_ms = created_ms + rng.randint(5, 40) * DAY_MS
        if not crm.add_deal(deal_ms, force_won=True):
            crm.case = "normal"
    # email status
    updates = [created_ms] + [entry[0] for entry in crm.lifecycle] + [entry[0] for entry in crm.status]
    for event_ms in (behaviour.unsubscribed_ms, behaviour.bounced_ms):
        if 0 <= event_ms <= end_ms:
            updates.append(event_ms + 5000)
    if owner_id and owner_id != plan.owner_id:
        updates.append(max(created_ms, behaviour.mql_ms if behaviour.mql_ms >= 0 else created_ms))
    updates += [meeting["ms"] for meeting in crm.meetings] + [call["ms"] for call in crm.calls]
    updated_ms = min(end_ms, max(updates))
    crm.lifecycle.sort(key=lambda entry: entry[0])
    crm.status.sort(key=lambda entry: entry[0])
    return _contact_output(crm, updated_ms, events)


def deal_probability(behaviour: ContactBehaviour, sql_ms: int) -> float:
    """The planted rule effect (ground_truth.json "rule_effects"): an SQL that downloaded decision-stage content
    before it becomes a deal more often; the rule download_decision should show the highest lift."""
    tables = behaviour.tables
    read_decision = any(isinstance(unit, Session) and unit.day * DAY_MS + unit.sec * 1000 < sql_ms
                        and unit.features(tables).get("downloads_decision") for unit in behaviour.units)
    return DEAL_PROBABILITY["decision_download" if read_decision else "otherwise"]


def _sales_follow_up(crm: CrmActivity) -> None:
    """The SDR's outreach to an MQL, the owner's follow-up of an SQL (calls, a meeting, a rejection or a deal),
    or an intro call that disqualifies a lead; these may change the planted case."""
    behaviour, tables, sql_ms = crm.behaviour, crm.tables, crm.sql_ms
    plan, rng, end_ms = behaviour.plan, behaviour.rng, tables.end_ms
    created_ms = behaviour.created_ms
    company_name = behaviour.company.name if behaviour.company else f"{plan.first} {plan.last}"
    # SDR outreach to MQLs
    if plan.mql_day >= 0 and behaviour.mql_ms >= 0 and rng.random() < 0.35:
        outreach_ms = behaviour.mql_ms + rng.randint(2 * HOUR, 5 * 24 * HOUR) * 1000
        if crm.add_call(outreach_ms, "MQL outreach") is not None:
            crm.status.append(crm.by_owner(outreach_ms, "IN_PROGRESS"))
    if crm.will_sql and sql_ms >= 0 and sql_ms <= end_ms:
        if plan.sql_via == "CRM_UI":
            crm.lifecycle.append(crm.by_owner(sql_ms, "salesqualifiedlead"))
        # the owner's follow-up: usually within hours, sometimes days
        draw = rng.random()
        hours = (rng.uniform(0.2, 4) if draw < 0.55 else rng.uniform(4, 24) if draw < 0.82
                 else rng.uniform(24, 80))
        if plan.sql_via == "CRM_UI" and rng.random() < 0.5:
            hours = -rng.uniform(0.1, 1.5)  # the rep called, then set the stage
        call_ms = sql_ms + int(hours * HOUR_MS)
        disposition = crm.add_call(call_ms, "SQL follow-up")
        if disposition is not None:
            connected = disposition.startswith(CONNECTED_DISPOSITION_PREFIX)
            crm.status.append(crm.by_owner(call_ms, "CONNECTED" if connected else "IN_PROGRESS"))
            if not connected:
                crm.add_call(call_ms + rng.randint(20, 120) * HOUR_MS, "SQL follow-up (retry)")
        if plan.sql_via in ("Demo Requested", "Meeting Booked") or rng.random() < 0.5:
            meeting_at_ms = sql_ms + rng.randint(1, 7) * DAY_MS + rng.randint(-3, 3) * HOUR_MS
            booked_ms = sql_ms + (0 if plan.sql_via == "Meeting Booked" else rng.randint(1, 30) * HOUR_MS)
            crm.add_meeting(booked_ms, meeting_at_ms,
                            "Discovery call" if plan.sql_via != "Demo Requested" else f"Demo: {company_name}")
        draw = rng.random()
        rejected = "BAD_TIMING" if draw < 0.10 else "UNQUALIFIED" if draw < 0.14 else ""
        if rejected:
            rejected_ms = sql_ms + rng.randint(1 * 24, 21 * 24) * HOUR_MS
            if rejected_ms <= end_ms:
                crm.status.append(crm.by_owner(rejected_ms, rejected))
                crm.case = "sql_rejected_bad_timing" if rejected == "BAD_TIMING" else "sql_unqualified"
        elif behaviour.company is not None and rng.random() < deal_probability(behaviour, sql_ms):
            crm.add_deal(sql_ms + rng.randint(2, 12) * DAY_MS)
    elif crm.case == "normal" and plan.kind == "business" and plan.mql_day < 0 and rng.random() < 0.015:
        intro_ms = created_ms + rng.randint(3, 60) * DAY_MS
        if intro_ms <= end_ms:
            crm.add_call(intro_ms - HOUR_MS, "Intro call")
            crm.status.append(crm.by_owner(intro_ms, "UNQUALIFIED"))
            crm.case = "lead_unqualified"


def _contact_output(crm: CrmActivity, updated_ms: int, events: list) -> ContactOutput:
    """The contact, its deals, meetings and calls as JSON lines and CSV rows, and its ground-truth row."""
    owner_id, sql_ms = crm.owner_id, crm.sql_ms
    behaviour, timestamp, end_ms = crm.behaviour, crm.tables.timestamp, crm.tables.end_ms
    plan, company = behaviour.plan, behaviour.company
    created = timestamp(behaviour.created_ms)
    props = {
        "email": plan.email, "firstname": plan.first, "lastname": plan.last, "phone": plan.phone or None,
        "jobtitle": plan.jobtitle, "persona": plan.persona, "company": company.name if company else None,
        "associatedcompanyid": company.id if company else None,
        "hubspot_owner_id": owner_id or None, "lifecyclestage": crm.lifecycle[-1][1],
        "hs_lead_status": crm.status[-1][1],
        "hs_analytics_source": plan.channel, "hs_analytics_source_data_1": plan.source_data_1 or None,
        "hs_email_optout": "true" if 0 <= behaviour.unsubscribed_ms <= end_ms else "false",
        "hs_email_bounce": "true" if 0 <= behaviour.bounced_ms <= end_ms else "false",
        "createdate": created, "lastmodifieddate": timestamp(updated_ms), "hs_object_id": plan.id,
        "handoff_score": None, "handoff_reasons": None, "handoff_sql_at": None,
    }
    contact = {"id": plan.id, "properties": props, "createdAt": created, "updatedAt": timestamp(updated_ms),
               "archived": False, "propertiesWithHistory": {
                   "lifecyclestage": [history_entry(timestamp, entry) for entry in reversed(crm.lifecycle)],
                   "hs_lead_status": [history_entry(timestamp, entry) for entry in reversed(crm.status)]}}
    contact_row = [plan.id, plan.first, plan.last, plan.email, plan.phone, plan.jobtitle, plan.persona,
                   props["associatedcompanyid"] or "", props["company"] or "", owner_id, props["lifecyclestage"],
                   props["hs_lead_status"], plan.channel, plan.source_data_1, props["hs_email_optout"],
                   props["hs_email_bounce"], props["createdate"], props["lastmodifieddate"]]
    history_rows = [[plan.id, value, timestamp(at_ms), source, "" if user is None else str(user)]
                    for at_ms, value, source, _, user in crm.lifecycle]
    meeting_ref = {"results": [{"id": plan.id, "type": "meeting_to_contact"}]}
    meeting_lines = [_engagement_line(meeting, "hs_createdate", {"contacts": meeting_ref})
                     for meeting in crm.meetings]
    call_ref = {"results": [{"id": plan.id, "type": "call_to_contact"}]}
    call_lines = [_engagement_line(call, "hs_createdate", {"contacts": call_ref}) for call in crm.calls]
    deal_associations = {"contacts": {"results": [{"id": plan.id, "type": "deal_to_contact"}]},
                         "companies": {"results": [{"id": company.id, "type": "deal_to_company"}]}
                         if company else {"results": []}}
    deal_lines = [_engagement_line(deal, "createdate", deal_associations) for deal in crm.deals]
    meeting_rows = [[m["id"], m["props"]["hs_timestamp"], m["props"]["hs_meeting_title"],
                     m["props"]["hs_meeting_outcome"], m["props"]["hubspot_owner_id"], m["props"]["hs_createdate"],
                     m["props"]["hs_lastmodifieddate"], plan.id] for m in crm.meetings]
    call_rows = [[c["id"], c["props"]["hs_timestamp"], c["props"]["hs_call_direction"],
                  c["props"]["hs_call_disposition"], c["props"]["hs_call_title"], c["props"]["hubspot_owner_id"],
                  c["props"]["hs_createdate"], c["props"]["hs_lastmodifieddate"], plan.id] for c in crm.calls]
    deal_rows = [[d["id"], d["props"]["dealname"], "default", d["props"]["dealstage"], d["props"]["amount"],
                  d["props"]["createdate"], d["props"]["closedate"] or "", d["props"]["hubspot_owner_id"],
                  d["props"]["hs_lastmodifieddate"], plan.id, company.id if company else ""] for d in crm.deals]
    will_mql = plan.mql_day >= 0
    sql_in_window = crm.will_sql and 0 <= sql_ms <= end_ms
    mql_at = timestamp(behaviour.mql_ms) if will_mql else ""
    sql_at = timestamp(sql_ms) if sql_in_window else ""
    lag_days = ""
    if will_mql and sql_in_window:
        lag_days = str(sql_ms // DAY_MS - behaviour.mql_ms // DAY_MS)
    truth = [plan.id, plan.email, plan.channel, plan.persona, plan.segment if company else "Unknown",
             f"{plan.intent:.3f}", bool_text(will_mql), bool_text(sql_in_window), mql_at, lag_days, sql_at,
             bool_text(plan.kind == "competitor"), bool_text(plan.kind == "applicant"),
             bool_text(plan.domain_type == "personal")]
    return ContactOutput(orjson.dumps(contact, option=APPEND_NEWLINE), contact_row, history_rows, deal_lines,
                         deal_rows, meeting_lines, meeting_rows, call_lines, call_rows, truth, events, crm.case,
                         behaviour.mql_ok, will_mql, sql_in_window)


def _engagement_line(record: dict, created_key: str, associations: dict) -> bytes:
    """A deal, meeting or call as a HubSpot v3 object line."""
    props = record["props"]
    return orjson.dumps({"id": record["id"], "properties": props, "createdAt": props[created_key],
                         "updatedAt": props["hs_lastmodifieddate"], "archived": False,
                         "associations": associations}, option=APPEND_NEWLINE)


def history_entry(timestamp, entry: HistoryEntry) -> dict:
    at_ms, value, source, source_id, user = entry
    return {"value": value, "timestamp": timestamp(at_ms), "sourceType": source, "sourceId": source_id,
            "updatedByUserId": user}


def bool_text(value: bool) -> str:
    return "true" if value else "false"
