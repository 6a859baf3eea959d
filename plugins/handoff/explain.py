"""``handoff explain CONTACT`` — one contact's way through the funnel, from the warehouse's marts.

CONTACT is a CRM contact id, an email hash as the marts carry it (``email_hash``: md5 of the trimmed, lower-cased
email), or an email address, hashed here the same way (the email itself is never sent to the warehouse). The
report: the stages the contact reached, each with its evidence (the rules that fired with their values and
points, or the CRM record that set it, or "inferred" from a later stage) and the definition version; its score
history, compact (the days a rule started or stopped scoring, the score rose, or the MQL rule began or ceased to
hold, with the first and the last day); and what it still lacks for the next stage. It reads the marts and the
funnel settings as the transformer role (the settings and the CRM's records are not in the marts).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import psycopg
from psycopg.rows import dict_row

STAGES = ("lead", "mql", "sql", "opportunity", "customer")
EMAIL_HASH = re.compile(r"^[0-9a-f]{32}$")


class ExplainError(ValueError):
    """The contact cannot be explained: unknown, or the marts are not built. The message says what to do."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = ("Explain one contact: its stages with their evidence (rules and values, or the CRM's "
                          "record) and definition version, its score history, and what it lacks for the next stage.")
    parser.add_argument("contact", metavar="CONTACT",
                        help="a CRM contact id, the contact's email_hash (md5 of the trimmed, lower-cased email), "
                             "or its email address (hashed here; never sent to the warehouse)")
    parser.add_argument("--json", action="store_true", help="print the report as one JSON object (machine use)")


def main(args: argparse.Namespace) -> int:
    from handoff import warehouse  # noqa: PLC0415

    with warehouse.connect("transformer") as conn:
        report = explain(conn, args.contact)
    print(json.dumps(report, default=_json_value, indent=2) if args.json else render(report))
    return 0


def email_hash(email: str) -> str:
    """The marts' email_hash of an address: md5 of the lower-cased email trimmed of spaces (stg_crm__contacts)."""
    return hashlib.md5(email.strip(" ").lower().encode()).hexdigest()  # noqa: S324 (an identifier, not a secret)


def explain(conn: psycopg.Connection, contact: str) -> dict[str, Any]:
    """The report for one contact (see the module's docstring), as plain data."""
    conn.row_factory = dict_row
    try:
        found = _find(conn, contact)
        settings = conn.execute("select * from intermediate.int_funnel_settings").fetchone()
    except psycopg.errors.UndefinedTable as exc:
        raise ExplainError(f"the warehouse has no marts yet ({exc.diag.message_primary}): build them with "
                           "`handoff run --date YYYY-MM-DD` or `handoff dbt build`") from None
    cid = found["contact_id"]
    signals = [r["value"] for r in conn.execute(
        "select value from staging.funnel_lists where list_name = 'sql_signals' order by value")]
    stages = [_stage(conn, cid, t) for t in conn.execute(
        """select to_stage as stage, transitioned_at, evidence_source, rule_ids, rule_details, is_inferred,
                  definition_version
           from marts.fct_stage_transitions where contact_id = %s
           order by transitioned_at, array_position(array['lead', 'mql', 'sql', 'opportunity', 'customer',
                                                          'disqualified', 'recycled'], to_stage)""", [cid])]
    scores = conn.execute(
        """select score_date, score, fit_score, engagement_score, meets_mql_rule, rule_ids
           from marts.fct_contact_scores_daily where contact_id = %s order by score_date""", [cid]).fetchall()
    return {
        "contact_id": cid,
        "crm_contact_id": found["crm_contact_id"],
        "current_stage": found["current_stage"],
        "current_score": found["current_score"],
        "current_fit_score": found["current_fit_score"],
        "definition_version": found["definition_version"],
        "stages": stages,
        "score_days": len(scores),
        "score_history": compact_scores(scores),
        "lacks": lacks(found, settings, signals),
    }


def _find(conn: psycopg.Connection, contact: str) -> dict[str, Any]:
    wanted = contact.strip()
    key = email_hash(wanted) if "@" in wanted else wanted.lower() if EMAIL_HASH.match(wanted.lower()) else None
    rows = conn.execute(
        """select * from marts.dim_contacts
           where crm_contact_id = %(id)s or contact_id = %(id)s or email_hash = %(hash)s
           order by crm_contact_id = %(id)s desc, contact_id limit 2""", {"id": wanted, "hash": key}).fetchall()
    if not rows:
        how = "email hash" if key else "CRM contact id"
        raise ExplainError(f"no contact {contact!r} in marts.dim_contacts (looked up by {how}): check the id or "
                           "email; an archived contact, or one created after the last run, is not there")
    if len(rows) > 1 and rows[0]["crm_contact_id"] != wanted:
        raise ExplainError(f"{contact!r} is the email of several contacts ({rows[0]['contact_id']}, "
                           f"{rows[1]['contact_id']}, ...): give a CRM contact id")
    return rows[0]


def _stage(conn: psycopg.Connection, cid: str, t: dict[str, Any]) -> dict[str, Any]:
    stage = {k: t[k] for k in ("stage", "transitioned_at", "evidence_source", "is_inferred", "definition_version")}
    details = t["rule_details"] or {}
    points, values = details.get("points") or {}, details.get("values") or {}
    stage["rules"] = [{"rule_id": r, "value": values.get(r), "points": points.get(r)} for r in t["rule_ids"]]
    stage["crm_record"] = _crm_record(conn, cid, t["stage"], t["transitioned_at"]) \
        if t["evidence_source"] == "crm" else None
    return stage


def _crm_record(conn: psycopg.Connection, cid: str, stage: str, at: datetime) -> str | None:
    """The CRM record whose time is the stage's: a lifecycle-history entry, a stage-date property or a deal."""
    row = conn.execute(
        """select 'lifecycle history: ' || lifecycle_stage_raw || ' set by ' || coalesce(source_type, 'unknown')
                  || coalesce(' (user ' || changed_by_user_id || ')', '') as record
           from staging.stg_crm__contact_lifecycle_history
           where contact_id = %(cid)s and lifecycle_stage = %(stage)s and changed_at = %(at)s
           union all
           select 'stage-date property ' || property
           from staging.stg_crm__contact_stage_dates
           where contact_id = %(cid)s and lifecycle_stage = %(stage)s and entered_at = %(at)s
           union all
           select 'deal ' || deals.deal_id || case when %(stage)s = 'customer' then ' closed won' else ' created' end
           from staging.stg_crm__deals as deals
           inner join staging.stg_crm__deal_contacts as links on deals.deal_id = links.deal_id
           where links.contact_id = %(cid)s
               and case when %(stage)s = 'customer' then deals.is_closed_won and deals.closed_at = %(at)s
                        else %(stage)s = 'opportunity' and deals.created_at = %(at)s end
           union all
           select 'the contact''s creation in the CRM'
           from staging.stg_crm__contacts
           where contact_id = %(cid)s and %(stage)s = 'lead' and created_at = %(at)s
           limit 1""", {"cid": cid, "stage": stage, "at": at}).fetchone()
    return row["record"] if row else None


def compact_scores(scores: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The days that say how the score moved: the first and the last, and each day a rule started or stopped
    scoring, the score rose (behaviour points only fade otherwise) or the MQL rule began or ceased to hold."""
    kept = []
    for i, day in enumerate(scores):
        before = scores[i - 1] if i else None
        started = sorted(set(day["rule_ids"]) - set(before["rule_ids"])) if before else list(day["rule_ids"])
        stopped = sorted(set(before["rule_ids"]) - set(day["rule_ids"])) if before else []
        rose = before is not None and day["score"] > before["score"]
        mql_changed = before is not None and day["meets_mql_rule"] != before["meets_mql_rule"]
        if before is None or i == len(scores) - 1 or started or stopped or rose or mql_changed:
            kept.append({"score_date": day["score_date"], "score": day["score"], "fit_score": day["fit_score"],
                         "engagement_score": day["engagement_score"], "meets_mql_rule": day["meets_mql_rule"],
                         "rules_started": started, "rules_stopped": stopped})
    return kept


def lacks(contact: dict[str, Any], settings: dict[str, Any], signals: list[str]) -> dict[str, Any]:
    """What the contact still needs for its next stage, as of the run's interval end."""
    if contact["is_disqualified"]:
        return {"next_stage": None, "needs": [f"nothing: disqualified ({contact['disqualified_reason']}); "
                                              "handoff's rules give it no later stage"]}
    reached = [s for s in STAGES if contact[f"{s}_at"] is not None]
    following = [s for s in STAGES if s not in reached]
    if not following:
        return {"next_stage": None, "needs": ["nothing: customer is the last stage"]}
    nxt = following[0]
    if nxt == "mql":
        short = max(Decimal(0), settings["mql_score_threshold"] - Decimal(contact["current_score"]))
        fit_short = max(Decimal(0), settings["mql_min_fit_score"] - Decimal(contact["current_fit_score"]))
        needs = [f"score {_num(contact['current_score'])} of {_num(settings['mql_score_threshold'])}: "
                 + (f"{_num(short)} points short" if short else "enough"),
                 f"fit score {_num(contact['current_fit_score'])} of {_num(settings['mql_min_fit_score'])}: "
                 + (f"{_num(fit_short)} points of fit short (a fit rule must hold)" if fit_short else "enough")]
        if not short and not fit_short:
            needs.append(f"the MQL rule holds: evidence.mql is {settings['mql_evidence']}, so the rules do not set "
                         "the stage" if settings["mql_evidence"] == "crm" else
                         "the MQL rule holds: the next run makes it an MQL")
        return {"next_stage": nxt, "score_short": short, "fit_short": fit_short, "needs": needs}
    if nxt == "sql":
        needs = [f"a decision signal ({', '.join(signals)})" if settings["sql_evidence"] != "crm" else None,
                 "or a rep setting an SQL lifecycle stage in the CRM" if settings["sql_evidence"] != "rules" else None]
        return {"next_stage": nxt, "needs": [n for n in needs if n]}
    if nxt == "opportunity":
        return {"next_stage": nxt, "needs": ["a deal associated with the contact in the CRM (or the CRM's record "
                                             "of the opportunity stage)"]}
    return {"next_stage": nxt, "needs": ["a deal closed won (or the CRM's record of the customer stage)"]}


def render(report: dict[str, Any]) -> str:
    lines = [f"contact {report['contact_id']} (CRM id {report['crm_contact_id']}): {report['current_stage']}, "
             f"score {_num(report['current_score'])} (fit {_num(report['current_fit_score'])}), "
             f"definition {report['definition_version']}", "", "stages:"]
    for s in report["stages"]:
        if s["evidence_source"] == "rules" and s["rules"]:
            how = "rules: " + ", ".join(
                r["rule_id"] + (f"={_num(r['value'])}" if r["value"] is not None else "")
                + (f" ({_num(r['points'])} pts)" if r["points"] is not None else "") for r in s["rules"])
        elif s["evidence_source"] == "crm":
            how = f"CRM: {s['crm_record'] or 'the CRM record of the stage'}"
        else:
            how = s["evidence_source"] + (" (skipped: given the later stage's time)" if s["is_inferred"] else "")
        lines.append(f"  {_ts(s['transitioned_at'])}  {s['stage']:<12} {how}  [definition {s['definition_version']}]")
    lines += ["", f"score history ({len(report['score_history'])} of {report['score_days']} days; the days it "
              "moved):"]
    for d in report["score_history"]:
        moves = "".join([f" +{r}" for r in d["rules_started"]] + [f" -{r}" for r in d["rules_stopped"]])
        lines.append(f"  {d['score_date']}  score {_num(d['score']):>6} (fit {_num(d['fit_score'])}, engagement "
                     f"{_num(d['engagement_score'])}){' MQL rule holds' if d['meets_mql_rule'] else ''}{moves}")
    lacking = report["lacks"]
    lines += ["", f"next stage: {lacking['next_stage'] or '—'}"] + [f"  needs {n}" for n in lacking["needs"]]
    return "\n".join(lines)


def _num(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, (int, float, Decimal)):
        return f"{Decimal(str(value)).quantize(Decimal('0.01')).normalize():f}"
    return str(value)


def _ts(value: datetime) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC")


def _json_value(value: Any) -> Any:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    raise TypeError(f"{type(value).__name__} is not JSON")
