"""CRM CSV exports: mapping into the API shape, nothing lost, the ledger, and a hostile header."""

from __future__ import annotations

import csv
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from handoff import sources
from handoff.load import crm_csv
from handoff.load.batches import LoadError

END = datetime(2026, 3, 2, tzinfo=UTC)
MAPPING = sources.load().crm.csv_mapping  # the shipped config/sources.yml mapping


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


CONTACT_HEADER = ["Record ID", "First Name", "Last Name", "Email", "Lifecycle Stage", "Create Date",
                  "Last Modified Date", "Favourite Colour"]


def q(wh, query, params=None):
    with psycopg.connect(wh.conninfo("admin")) as conn:
        return conn.execute(query, params).fetchall()


def test_contacts_map_to_the_api_shape_with_history_and_extras(wh, tmp_path):
    write_csv(tmp_path / "contacts.csv", CONTACT_HEADER, [
        ["101", "Ada", "Lovelace", "ada@example.org", "marketingqualifiedlead", "2026-02-01T09:00:00.000Z",
         "2026-03-01T10:00:00.000Z", "teal"],
        ["102", "Alan", "", "alan@example.org", "lead", "2026-02-02T09:00:00.000Z", "2026-03-01T11:00:00.000Z", ""],
        ["", "No", "Id", "x@example.org", "lead", "", "2026-03-01T11:00:00.000Z", ""],
        ["103", "Bad", "Date", "y@example.org", "lead", "", "someday", ""],
        ["104", "Short", "Row"],
    ])
    write_csv(tmp_path / "lifecycle_stage_history.csv",
              ["Contact ID", "Lifecycle Stage", "Changed At", "Source Type", "Changed By User ID"], [
                  ["101", "lead", "2026-02-01T09:00:00.000Z", "FORM", ""],
                  ["101", "marketingqualifiedlead", "2026-02-20T09:00:00.000Z", "CRM_UI", "77"]])
    # 3 of 5 rows bad: allowed here (this test is about the mapping and the quarantine reasons, not the rejection)
    res = crm_csv.load_crm_csv(wh.conninfo("loader"), tmp_path, MAPPING, interval_end=END, max_bad_share=1.0)
    assert res["objects"]["contacts"]["rows_loaded"] == 2
    assert res["objects"]["contacts"]["rows_quarantined"] == 3
    [(record_id, updated_at, archived, record)] = q(
        wh, "select record_id, updated_at, archived, record from raw.crm_contacts where record_id = '101'")
    assert (record_id, updated_at, archived) == ("101", datetime(2026, 3, 1, 10, tzinfo=UTC), False)
    assert record["id"] == "101"
    assert record["createdAt"] == "2026-02-01T09:00:00.000Z"
    assert record["updatedAt"] == "2026-03-01T10:00:00.000Z"
    assert record["archived"] is False
    assert record["properties"]["email"] == "ada@example.org"
    assert record["properties"]["lifecyclestage"] == "marketingqualifiedlead"
    assert record["properties"]["lastmodifieddate"] == "2026-03-01T10:00:00.000Z"
    assert record["extra"] == {"Favourite Colour": "teal"}  # unmapped: kept, not lost
    assert [h["value"] for h in record["propertiesWithHistory"]["lifecyclestage"]] == [
        "marketingqualifiedlead", "lead"]  # newest first
    assert record["propertiesWithHistory"]["lifecyclestage"][0]["sourceType"] == "CRM_UI"
    assert q(wh, "select record->'properties'->>'lastname' is null from raw.crm_contacts where record_id = '102'"
             ) == [(True,)]  # empty cell -> null, as the API
    assert q(wh, "select _line, record_ref, reason from raw.quarantine order by _line") == [
        (4, None, "missing id (Record ID is empty)"),
        (5, "103", "unparseable Last Modified Date: 'someday'"),
        (6, None, "row has 3 fields, the header has 8")]
    assert q(wh, "select rows_read, rows_loaded, rows_quarantined from ops.load_log") == [(5, 2, 3)]

    # the same exports again: skipped by the ledger
    again = crm_csv.load_crm_csv(wh.conninfo("loader"), tmp_path, MAPPING, interval_end=END, max_bad_share=1.0)
    assert again["objects"]["contacts"]["status"] == "skipped"
    assert q(wh, "select count(*) from raw.crm_contacts") == [(2,)]


def test_deals_associations_and_owners_top_level(wh, tmp_path):
    write_csv(tmp_path / "deals.csv", ["Record ID", "Deal Name", "Deal Stage", "Amount", "Create Date",
                                       "Last Modified Date", "Associated Contact IDs", "Associated Company IDs"],
              [["9", "Big deal", "closedwon", "1200", "2026-02-01T00:00:00Z", "2026-03-01T00:00:00Z", "101;102", ""]])
    write_csv(tmp_path / "owners.csv", ["Owner ID", "User ID", "First Name", "Last Name", "Email", "Team",
                                        "Create Date", "Last Modified Date"],
              [["7", "70", "Rae", "Rep", "rae@example.org", "EMEA", "2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z"]])
    crm_csv.load_crm_csv(wh.conninfo("loader"), tmp_path, MAPPING, interval_end=END)
    [(deal,)] = q(wh, "select record from raw.crm_deals")
    assert deal["associations"] == {"contacts": {"results": [{"id": "101"}, {"id": "102"}]},
                                    "companies": {"results": []}}
    assert deal["properties"]["amount"] == "1200"
    [(owner,)] = q(wh, "select record from raw.crm_owners")
    assert (owner["id"], owner["email"], owner["userId"], owner["teams"]) == (
        "7", "rae@example.org", "70", [{"name": "EMEA", "primary": True}])


def test_hostile_header_is_data_not_sql(wh, tmp_path):
    hostile = '"; drop table raw.crm_contacts; --'
    write_csv(tmp_path / "contacts.csv", ["Record ID", "Last Modified Date", hostile, "Robert'); DROP TABLE x;--"],
              [["1", "2026-03-01T00:00:00Z", "v1", "v2"]])
    res = crm_csv.load_crm_csv(wh.conninfo("loader"), tmp_path, MAPPING, interval_end=END)
    assert res["objects"]["contacts"]["rows_loaded"] == 1
    assert q(wh, "select to_regclass('raw.crm_contacts') is not null") == [(True,)]
    [(record,)] = q(wh, "select record from raw.crm_contacts")
    assert record["extra"] == {hostile: "v1", "Robert'); DROP TABLE x;--": "v2"}


def test_hostile_names_in_the_mapping_are_rejected_before_any_sql(wh, tmp_path):
    write_csv(tmp_path / "contacts.csv", ["Record ID"], [["1"]])
    with pytest.raises(sources.SourcesError, match="unknown object"):
        crm_csv.load_crm_csv(wh.conninfo("loader"), tmp_path,
                             {"contacts; drop table raw.crm_contacts": {"id_column": "Record ID"}}, interval_end=END)
    with pytest.raises(sources.SourcesError, match="must be a file name inside csv_dir"):
        crm_csv.load_crm_csv(wh.conninfo("loader"), tmp_path,
                             {"contacts": {"id_column": "Record ID", "file": "../../etc/passwd"}}, interval_end=END)


def test_missing_id_column_names_file_and_key(wh, tmp_path):
    write_csv(tmp_path / "contacts.csv", ["Id", "Email"], [["1", "a@example.org"]])
    with pytest.raises(LoadError, match=r"contacts.csv: no column 'Record ID' \(crm.csv_mapping.contacts.id_column"):
        crm_csv.load_crm_csv(wh.conninfo("loader"), tmp_path, MAPPING, interval_end=END)
    [(status, error)] = q(wh, "select status, error from ops.load_log")  # a failed load leaves its row
    assert status == "failed" and "contacts.csv: no column 'Record ID'" in error
    assert q(wh, "select count(*) from ops.file_ledger") == [(0,)]


HISTORY_HEADER = ["Contact ID", "Lifecycle Stage", "Changed At", "Source Type", "Changed By User ID"]


def _contacts_and_history(tmp_path: Path, *, modified: str, history: list[list[str]]) -> None:
    write_csv(tmp_path / "contacts.csv", CONTACT_HEADER, [
        ["101", "Ada", "Lovelace", "ada@example.org", "marketingqualifiedlead", "2026-02-01T09:00:00.000Z", modified,
         ""],
        ["", "No", "Id", "x@example.org", "lead", "", modified, ""]])  # quarantined once, by its own batch
    write_csv(tmp_path / "lifecycle_stage_history.csv", HISTORY_HEADER, history)


def _history_of(wh, record_id: str) -> list[list]:
    """The lifecycle-stage history of each raw version of a contact, oldest load first."""
    return [[(h["value"], h["timestamp"]) for h in record["propertiesWithHistory"]["lifecyclestage"]]
            for (record,) in q(wh, "select record from raw.crm_contacts where record_id = %s order by _loaded_at",
                               [record_id])]


LEAD = ["101", "lead", "2026-02-01T09:00:00.000Z", "FORM", ""]
MQL = ["101", "marketingqualifiedlead", "2026-02-20T09:00:00.000Z", "CRM_UI", "77"]
BAD_HISTORY = ["101", "lead", "someday", "FORM", ""]  # quarantined once, by the batch that loads the history


def test_a_new_contacts_export_beside_an_unchanged_history_is_loaded_with_that_history(wh, tmp_path):
    _contacts_and_history(tmp_path, modified="2026-03-01T10:00:00.000Z", history=[LEAD, MQL, BAD_HISTORY])
    first = crm_csv.load_crm_csv(wh.conninfo("loader"), tmp_path, MAPPING, interval_end=END, max_bad_share=1.0)
    assert first["objects"]["contacts"]["status"] == "loaded"
    # the next day: a new contacts export, the same history export
    _contacts_and_history(tmp_path, modified="2026-03-02T10:00:00.000Z", history=[LEAD, MQL, BAD_HISTORY])
    res = crm_csv.load_crm_csv(wh.conninfo("loader"), tmp_path, MAPPING, interval_end=END, max_bad_share=1.0)
    assert res["objects"]["contacts"] == {"status": "loaded", "batch_id": res["objects"]["contacts"]["batch_id"],
                                          "rows_loaded": 1, "rows_quarantined": 1}
    assert q(wh, "select updated_at from raw.crm_contacts where record_id = '101' order by _loaded_at") == [
        (datetime(2026, 3, 1, 10, tzinfo=UTC),), (datetime(2026, 3, 2, 10, tzinfo=UTC),)]
    want = [("marketingqualifiedlead", "2026-02-20T09:00:00.000Z"), ("lead", "2026-02-01T09:00:00.000Z")]
    assert _history_of(wh, "101") == [want, want]  # the new version has the (unchanged) history too
    # the ledger: each file once, the history file with the first batch, the new contacts file with the second
    batches = [first["objects"]["contacts"]["batch_id"], res["objects"]["contacts"]["batch_id"]]
    assert q(wh, "select regexp_replace(path, '.*/', ''), batch_id::text from ops.file_ledger order by loaded_at, path"
             ) == [("contacts.csv", batches[0]), ("lifecycle_stage_history.csv", batches[0]),
                   ("contacts.csv", batches[1])]
    assert q(wh, "select batch_id::text, status, rows_loaded, rows_quarantined, error from ops.load_log "
                 "order by started_at") == [(batches[0], "loaded", 1, 2, None), (batches[1], "loaded", 1, 1, None)]
    # the history's bad row is quarantined once (first batch), the new contacts file's missing id again (its own)
    assert q(wh, "select _batch_id::text, reason from raw.quarantine order by _loaded_at, reason") == [
        (batches[0], "lifecycle_stage_history.csv, unparseable Changed At: 'someday'"),
        (batches[0], "missing id (Record ID is empty)"), (batches[1], "missing id (Record ID is empty)")]


def test_a_new_history_export_beside_unchanged_contacts_is_merged_into_them(wh, tmp_path):
    _contacts_and_history(tmp_path, modified="2026-03-01T10:00:00.000Z", history=[LEAD])
    first = crm_csv.load_crm_csv(wh.conninfo("loader"), tmp_path, MAPPING, interval_end=END, max_bad_share=1.0)
    # the next day: the same contacts export, a new history export (a rep made Ada an MQL)
    _contacts_and_history(tmp_path, modified="2026-03-01T10:00:00.000Z", history=[LEAD, MQL, BAD_HISTORY])
    res = crm_csv.load_crm_csv(wh.conninfo("loader"), tmp_path, MAPPING, interval_end=END, max_bad_share=1.0)
    assert res["objects"]["contacts"] == {"status": "loaded", "batch_id": res["objects"]["contacts"]["batch_id"],
                                          "rows_loaded": 1, "rows_quarantined": 1}
    # the contact re-emitted: same updated_at, a later _loaded_at, so it is the latest version, with the history
    assert q(wh, "select updated_at from raw.crm_contacts where record_id = '101' order by _loaded_at") == [
        (datetime(2026, 3, 1, 10, tzinfo=UTC),)] * 2
    assert _history_of(wh, "101") == [
        [("lead", "2026-02-01T09:00:00.000Z")],
        [("marketingqualifiedlead", "2026-02-20T09:00:00.000Z"), ("lead", "2026-02-01T09:00:00.000Z")]]
    [(latest,)] = q(wh, "select record from raw.crm_contacts where record_id = '101' "
                        "order by updated_at desc, _loaded_at desc limit 1")
    assert latest["propertiesWithHistory"]["lifecyclestage"][0]["value"] == "marketingqualifiedlead"
    batches = [first["objects"]["contacts"]["batch_id"], res["objects"]["contacts"]["batch_id"]]
    assert q(wh, "select regexp_replace(path, '.*/', ''), batch_id::text from ops.file_ledger order by loaded_at, path"
             ) == [("contacts.csv", batches[0]), ("lifecycle_stage_history.csv", batches[0]),
                   ("lifecycle_stage_history.csv", batches[1])]
    hist_sha = q(wh, "select sha256 from ops.file_ledger where batch_id::text = %s", [batches[1]])[0][0]
    assert q(wh, "select batch_id::text, status, rows_loaded, rows_quarantined, sha256 = %s from ops.load_log "
                 "order by started_at", [hist_sha]) == [(batches[0], "loaded", 1, 1, False),
                                                         (batches[1], "loaded", 1, 1, True)]
    # the contacts file's bad row is not quarantined twice; the new history file's bad row is quarantined
    assert q(wh, "select _batch_id::text, reason from raw.quarantine order by _loaded_at, reason") == [
        (batches[0], "missing id (Record ID is empty)"),
        (batches[1], "lifecycle_stage_history.csv, unparseable Changed At: 'someday'")]
    # and both unchanged the day after: skipped, nothing written
    again = crm_csv.load_crm_csv(wh.conninfo("loader"), tmp_path, MAPPING, interval_end=END, max_bad_share=1.0)
    assert again["objects"]["contacts"]["status"] == "skipped"
    assert q(wh, "select count(*) from raw.crm_contacts") == [(2,)]
    assert q(wh, "select count(*) from ops.load_log") == [(2,)]


def test_history_rows_are_quarantined_under_the_history_file_and_orphans_are_counted(wh, tmp_path, caplog):
    _contacts_and_history(tmp_path, modified="2026-03-01T10:00:00.000Z", history=[
        LEAD, MQL, BAD_HISTORY, ["999", "lead", "2026-02-03T09:00:00.000Z", "FORM", ""],
        ["999", "marketingqualifiedlead", "2026-02-04T09:00:00.000Z", "CRM_UI", ""]])
    with caplog.at_level("WARNING", logger="handoff.load.crm_csv"):
        res = crm_csv.load_crm_csv(wh.conninfo("loader"), tmp_path, MAPPING, interval_end=END, max_bad_share=0.5)
    # 1 bad of 5 history rows (20%) and 1 bad of 2 contact rows (50%): within 0.5; the orphans are not "bad" rows
    assert res["objects"]["contacts"]["rows_loaded"] == 1
    assert res["objects"]["contacts"]["rows_quarantined"] == 4
    contacts, history = str(tmp_path / "contacts.csv"), str(tmp_path / "lifecycle_stage_history.csv")
    assert q(wh, "select _source, _line, record_ref, reason from raw.quarantine order by _source, _line") == [
        (contacts, 3, None, "missing id (Record ID is empty)"),
        (history, 4, None, "lifecycle_stage_history.csv, unparseable Changed At: 'someday'"),
        (history, 5, "999", "lifecycle_stage_history.csv, contact not in contacts.csv: '999', its history row "
                            "merged into no contact"),
        (history, 6, "999", "lifecycle_stage_history.csv, contact not in contacts.csv: '999', its history row "
                            "merged into no contact")]
    assert q(wh, "select rows_read, rows_loaded, rows_quarantined from ops.load_log") == [(5, 1, 4)]
    assert "2 history row(s) of 1 contact(s) not in contacts.csv, merged into no contact (quarantined): 999" in (
        caplog.text)
    # a new contacts export beside the unchanged history: the orphans are logged again, not quarantined twice
    caplog.clear()
    _contacts_and_history(tmp_path, modified="2026-03-02T10:00:00.000Z", history=[
        LEAD, MQL, BAD_HISTORY, ["999", "lead", "2026-02-03T09:00:00.000Z", "FORM", ""],
        ["999", "marketingqualifiedlead", "2026-02-04T09:00:00.000Z", "CRM_UI", ""]])
    with caplog.at_level("WARNING", logger="handoff.load.crm_csv"):
        again = crm_csv.load_crm_csv(wh.conninfo("loader"), tmp_path, MAPPING, interval_end=END, max_bad_share=0.5)
    assert (again["objects"]["contacts"]["rows_loaded"], again["objects"]["contacts"]["rows_quarantined"]) == (1, 1)
    assert "2 history row(s) of 1 contact(s) not in contacts.csv, merged into no contact: 999" in caplog.text
    assert q(wh, "select _source, count(*) from raw.quarantine group by 1 order by 1") == [(contacts, 2), (history, 3)]
