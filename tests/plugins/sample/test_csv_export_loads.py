"""The sample generator's CRM CSV export loads with the shipped config/sources.yml (crm.mode: csv) unchanged:
nothing quarantined, nothing rejected, and the date columns arrive in raw as ISO-8601 UTC."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from handoff import sources
from handoff.load import crm_csv

ISO_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


def test_sample_csv_export_loads_with_the_default_config(wh, sample: Path) -> None:
    crm = sources.load().crm
    res = crm_csv.load_crm_csv(wh.conninfo("loader"), sample / "crm_csv", crm.csv_mapping,
                               interval_end=datetime(2030, 1, 1, tzinfo=UTC), max_bad_share=crm.csv_max_bad_share,
                               dates=crm.csv_dates)
    assert res["rows_quarantined"] == 0
    assert {o: r["status"] for o, r in res["objects"].items()} == {
        o: "loaded" for o in ("companies", "contacts", "deals", "meetings", "calls", "owners")
        if (sample / "crm_csv" / f"{o}.csv").exists()}
    with psycopg.connect(wh.conninfo("admin")) as conn:
        assert conn.execute("select count(*) from ops.load_log where status <> 'loaded'").fetchone() == (0,)
        contact = conn.execute("select record from raw.crm_contacts where record->'propertiesWithHistory'"
                               "->'lifecyclestage' <> '[]'::jsonb limit 1").fetchone()[0]
        deal = conn.execute("select record from raw.crm_deals where record->'properties'->>'closedate' is not null "
                            "limit 1").fetchone()[0]
    assert ISO_UTC.fullmatch(contact["properties"]["createdate"])
    assert all(ISO_UTC.fullmatch(h["timestamp"]) for h in contact["propertiesWithHistory"]["lifecyclestage"])
    assert ISO_UTC.fullmatch(deal["properties"]["closedate"])
