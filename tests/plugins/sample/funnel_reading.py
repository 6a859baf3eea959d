"""A plain reading of config/funnel.yml over a generated sample (test helper, not product code).

It rebuilds each contact's daily features from the analytics files (anonymous events stitched through the
identify calls) and the CRM, scores every day with per-event decay and the rule windows, and returns the first
day each contact reaches the MQL rule. The generator promises its planted MQL days agree with any reasonable
reading; this is one such reading, written without looking at the generator's internals. The definition and the
rule operators come from ``handoff.funnel`` (the one model of the file); the scoring over the raw files is its own.
"""

from __future__ import annotations

import csv
import gzip
import json
from collections import defaultdict
from datetime import date, datetime, timedelta
from pathlib import Path

from handoff import funnel as funnel_definition

SESSION_GAP = timedelta(minutes=30)


def first_mql_days(sample: Path, funnel_path: Path, catalog_path: Path) -> dict[str, date | None]:
    funnel = funnel_definition.load(funnel_path)  # the one reading of the file and of the rule operators
    catalog = {r["path"]: r for r in csv.DictReader(catalog_path.open())}
    events_map = funnel.events
    lists = funnel.lists
    rules = funnel.rules
    half_life = funnel.half_life_days
    threshold = funnel.mql_score_threshold
    min_fit = funnel.mql_min_fit_score

    companies = {}
    with gzip.open(sample / "crm" / "companies.jsonl.gz") as fh:
        for line in fh:
            c = json.loads(line)
            companies[c["id"]] = c["properties"]
    contacts = {}
    with gzip.open(sample / "crm" / "contacts.jsonl.gz") as fh:
        for line in fh:
            c = json.loads(line)
            contacts[c["id"]] = c["properties"]

    # events -> (contact, day) features
    anon_to_user: dict[str, str] = {}
    page_events: list[tuple[str | None, str | None, datetime, str]] = []
    tracks: list[tuple[str | None, str | None, datetime, str, dict]] = []
    for f in sorted((sample / "analytics").glob("*/*.jsonl.gz")):
        with gzip.open(f) as fh:
            for line in fh:
                e = json.loads(line)
                ts = datetime.fromisoformat(e["timestamp"].replace("Z", "+00:00"))
                if e["type"] == "identify":
                    anon_to_user[e["anonymousId"]] = e["userId"]
                elif e["type"] == "page":
                    page_events.append((e["userId"], e["anonymousId"], ts, e["properties"]["path"]))
                else:
                    tracks.append((e["userId"], e["anonymousId"], ts, e["event"], e["properties"]))
    feats: dict[str, dict[date, dict[str, float]]] = defaultdict(lambda: defaultdict(lambda: defaultdict(float)))
    by_person: dict[str, list[datetime]] = defaultdict(list)
    for uid, anon, ts, path in page_events:
        who = uid or anon_to_user.get(anon)
        if who is None:
            continue
        by_person[who].append(ts)
        entry = catalog.get(path)
        ctype = entry["content_type"] if entry else ""
        key = {"pricing": "pricing_page_views", "comparison": "comparison_page_views",
               "careers": "careers_page_views"}.get(ctype)
        day = feats[who][ts.date()]
        day["pageviews"] += 1
        if key:
            day[key] += 1
    for who, times in by_person.items():
        times.sort()
        prev = None
        for ts in times:
            if prev is None or ts - prev > SESSION_GAP:
                feats[who][ts.date()]["sessions"] += 1
            prev = ts
    for uid, anon, ts, name, props in tracks:
        who = uid or anon_to_user.get(anon)
        feature = events_map.get(name)
        if who is None or feature is None:
            continue
        if feature == "downloads":
            stage = (catalog.get(props.get("asset_path")) or {}).get("buying_stage") or "awareness"
            feature = f"downloads_{stage}"
        feats[who][ts.date()][feature] += 1

    result: dict[str, date | None] = {}
    for cid, props in contacts.items():
        company = companies.get(props.get("associatedcompanyid") or "")
        domain = props["email"].rsplit("@", 1)[1]
        attrs = {"persona": props.get("persona"),
                 "email_domain_type": "competitor" if domain in lists["competitor_domains"]
                 else "personal" if domain in lists["personal_email_domains"] else "business"}
        if company:
            employees = int(company["numberofemployees"])
            attrs.update({"industry": company["industry"], "annual_revenue": int(company["annualrevenue"]),
                          "monthly_web_visitors": int(company["monthly_web_visitors"]),
                          "cms": company["web_technologies"].split(";"), "country": company["country"],
                          "company_size_band": funnel.size_band(employees)})
        fit = 0.0
        disqualified = False
        for r in rules:
            if r.feature_class == "fit" and r.holds(attrs.get(r.feature)):
                fit += r.points
                disqualified |= r.disqualify
        days = feats.get(cid, {})
        created = datetime.fromisoformat(props["createdate"].replace("Z", "+00:00")).date()
        # the score only rises on the sign-up day (fit) and on days with activity
        candidates = sorted({created} | {d for d in days if d >= created})
        found = None
        for d in candidates:
            score = fit
            dq = disqualified
            last_active = max([created] + [x for x in days if x <= d])
            for r in rules:
                feature = r.feature
                if r.feature_class == "fit":
                    continue
                if feature == "days_since_last_activity":
                    if r.holds((d - last_active).days):
                        score += r.points
                    continue
                window = r.window_days or 3650
                in_window = [(x, v) for x, v in days.items() if 0 <= (d - x).days < window]
                if feature == "repeat_visit_days":
                    total = sum(1 for _, v in in_window if v.get("sessions"))
                else:
                    total = sum(v.get(feature, 0) for _, v in in_window)
                if r.kind == "count":
                    decayed = sum(v.get(feature, 0) * 0.5 ** ((d - x).days / half_life) for x, v in in_window)
                    score += min(r.cap if r.cap is not None else float("inf"), r.points * decayed)
                elif r.holds(total):
                    score += r.points
                    dq |= r.disqualify
            if not dq and score >= threshold and fit >= min_fit:
                found = d
                break
        result[cid] = found
    return result
