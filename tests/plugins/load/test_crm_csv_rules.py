"""CRM CSV exports follow the analytics loader's rules: a bad-row share rejects the file (not ledgered, so the
rerun after the fix loads it), header and encoding problems fail the file naming it, every attempt leaves an
ops.load_log row, and dates are read as configured and written as ISO-8601 UTC."""

from __future__ import annotations

import codecs
import csv
import io
import re
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from handoff import sources
from handoff.load import crm_csv, crm_csv_reading
from handoff.load.batches import LoadError

END = datetime(2026, 3, 12, tzinfo=UTC)
SHIPPED = sources.load().crm.csv_mapping
CONTACTS = ["Record ID", "Email", "Lifecycle Stage", "Create Date", "Last Modified Date"]


def csv_text(header: list[str], rows: list[list[str]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue()


def write(path: Path, header: list[str], rows: list[list[str]], *, encoding: str = "utf-8", bom: bytes = b"") -> Path:
    path.write_bytes(bom + csv_text(header, rows).encode(encoding))
    return path


def q(wh, query, params=None):
    with psycopg.connect(wh.conninfo("admin")) as conn:
        return conn.execute(query, params).fetchall()


def only(mapping: dict, *objects: str) -> dict:
    return {o: mapping[o] for o in objects}


def load(wh, tmp_path, mapping=None, **kw):
    return crm_csv.load_crm_csv(wh.conninfo("loader"), tmp_path, mapping or only(SHIPPED, "contacts"),
                                interval_end=END, **kw)


def contacts_mapping(**changes) -> dict:
    spec = {"id_column": "Record ID", "updated_at_column": "Last Modified Date", "created_at_column": "Create Date",
            "columns": {"Email": "email", "Lifecycle Stage": "lifecyclestage", "Create Date": "createdate",
                        "Last Modified Date": "lastmodifieddate"}}
    spec.update(changes)
    return {"contacts": spec}


US_ROWS = [["101", "ada@example.org", "lead", "03/01/2026 09:00", "03/11/2026 14:05"],
           ["102", "alan@example.org", "lead", "03/02/2026 09:00", "03/11/2026 2:05 PM"]]


# -- the bad-row share ------------------------------------------------------------------------------------------
def test_all_rows_bad_rejects_the_file_unledgered_and_the_fixed_mapping_loads_it(wh, tmp_path):
    write(tmp_path / "contacts.csv", CONTACTS, US_ROWS)  # US dates; the mapping expects ISO-8601
    with pytest.raises(crm_csv.CsvRejected) as info:
        load(wh, tmp_path, contacts_mapping())
    message = str(info.value)
    assert f"{tmp_path / 'contacts.csv'}: 2 of 2 rows bad (100.00% > crm.csv_max_bad_share 1.00%)" in message
    assert "top reasons: unparseable Last Modified Date ×2" in message
    assert "first: line 2: unparseable Last Modified Date: '03/11/2026 14:05'; line 3: unparseable Last Modified " \
           "Date: '03/11/2026 2:05 PM' (dates read as ISO-8601, time zone UTC)" in message
    assert "raise crm.csv_max_bad_share" in message
    [(status, read, loaded, quarantined, error, sha)] = q(
        wh, "select status, rows_read, rows_loaded, rows_quarantined, error, sha256 from ops.load_log")
    assert (status, read, loaded, quarantined) == ("rejected", 2, 0, 2)
    assert error in message and sha is not None
    assert q(wh, "select count(*) from ops.file_ledger") == [(0,)]  # not ledgered: the rerun tries again
    assert q(wh, "select count(*) from raw.crm_contacts") == [(0,)]
    assert q(wh, "select count(*) from raw.quarantine") == [(0,)]

    # the same bytes, the mapping fixed: loaded, now ledgered
    res = load(wh, tmp_path, contacts_mapping(dates={"format": "month_first", "timezone": "America/New_York"}))
    assert res["objects"]["contacts"]["rows_loaded"] == 2
    assert q(wh, "select status, rows_read, rows_loaded, rows_quarantined from ops.load_log order by started_at"
             ) == [("rejected", 2, 0, 2), ("loaded", 2, 2, 0)]
    assert q(wh, "select count(*) from ops.file_ledger") == [(1,)]
    rows = q(wh, "select record_id, updated_at, record->>'updatedAt', record->'properties'->>'createdate', "
                 "record->'properties'->>'lastmodifieddate' from raw.crm_contacts order by record_id")
    assert rows == [  # New York is UTC-4 from 8 March 2026 (daylight saving), UTC-5 before
        ("101", datetime(2026, 3, 11, 18, 5, tzinfo=UTC), "2026-03-11T18:05:00.000Z", "2026-03-01T14:00:00.000Z",
         "2026-03-11T18:05:00.000Z"),
        ("102", datetime(2026, 3, 11, 18, 5, tzinfo=UTC), "2026-03-11T18:05:00.000Z", "2026-03-02T14:00:00.000Z",
         "2026-03-11T18:05:00.000Z")]
    # and a third run: skipped by the ledger, no new load_log row
    assert load(wh, tmp_path, contacts_mapping(dates={"format": "month_first"}))["objects"]["contacts"][
        "status"] == "skipped"
    assert q(wh, "select count(*) from ops.load_log") == [(2,)]


def test_missing_updated_at_column_fails_naming_column_and_file_then_the_fixed_mapping_loads(wh, tmp_path):
    header = ["Record ID", "Email", "Last Modified"]
    write(tmp_path / "contacts.csv", header, [["101", "ada@example.org", "2026-03-11T14:05:00Z"]])
    with pytest.raises(LoadError) as info:
        load(wh, tmp_path, contacts_mapping())
    assert not isinstance(info.value, crm_csv.CsvRejected)
    assert (f"{tmp_path / 'contacts.csv'}: no column 'Last Modified Date' (crm.csv_mapping.contacts.updated_at_column "
            "in config/sources.yml); the header has: 'Record ID', 'Email', 'Last Modified'") in str(info.value)
    [(status, read, error)] = q(wh, "select status, rows_read, error from ops.load_log")
    assert (status, read) == ("failed", 0)
    assert error.startswith(f"{tmp_path / 'contacts.csv'}: no column 'Last Modified Date'")
    assert q(wh, "select count(*) from ops.file_ledger") == [(0,)]

    load(wh, tmp_path, contacts_mapping(updated_at_column="Last Modified"))
    assert q(wh, "select status from ops.load_log order by started_at") == [("failed",), ("loaded",)]
    assert q(wh, "select record->>'updatedAt' from raw.crm_contacts") == [("2026-03-11T14:05:00.000Z",)]


def test_bad_share_at_the_limit_loads_and_above_it_rejects(wh, tmp_path):
    good = [[str(i), f"c{i}@example.org", "lead", "", "2026-03-01T00:00:00Z"] for i in range(1, 99)]
    write(tmp_path / "contacts.csv", CONTACTS, [*good, ["99", "x", "lead", "", "soon"], ["", "y", "", "", ""]])
    with pytest.raises(crm_csv.CsvRejected, match=r"2 of 100 rows bad \(2.00% > crm.csv_max_bad_share 1.00%\); "
                                                  r"top reasons: unparseable Last Modified Date ×1, missing id"):
        load(wh, tmp_path)
    res = load(wh, tmp_path, max_bad_share=0.02)  # 2% is not more than 2%
    assert (res["objects"]["contacts"]["rows_loaded"], res["objects"]["contacts"]["rows_quarantined"]) == (98, 2)
    assert q(wh, "select status, rows_read, rows_loaded, rows_quarantined from ops.load_log order by started_at"
             ) == [("rejected", 100, 0, 2), ("loaded", 100, 98, 2)]
    assert q(wh, "select _line, record_ref, reason from raw.quarantine order by _line") == [
        (100, "99", "unparseable Last Modified Date: 'soon'"), (101, None, "missing id (Record ID is empty)")]


def test_one_rejected_object_does_not_stop_the_others(wh, tmp_path):
    write(tmp_path / "contacts.csv", CONTACTS, US_ROWS)
    write(tmp_path / "deals.csv", ["Record ID", "Deal Name", "Last Modified Date"],
          [["9", "Big deal", "2026-03-01T00:00:00Z"]])
    with pytest.raises(crm_csv.CsvRejected, match=r"1 CRM CSV export\(s\) not loaded"):
        load(wh, tmp_path, only(SHIPPED, "contacts", "deals"))
    assert q(wh, "select source_kind, status, rows_loaded from ops.load_log order by source") == [
        ("crm_csv", "rejected", 0), ("crm_csv", "loaded", 1)]
    assert q(wh, "select count(*) from raw.crm_deals") == [(1,)]
    assert q(wh, "select path like '%%deals.csv' from ops.file_ledger") == [(True,)]


def test_a_bad_history_file_rejects_the_contacts_batch_naming_the_history_file(wh, tmp_path):
    write(tmp_path / "contacts.csv", CONTACTS, [["101", "a@example.org", "lead", "", "2026-03-01T00:00:00Z"]])
    write(tmp_path / "lifecycle_stage_history.csv", ["Contact ID", "Lifecycle Stage", "Changed At"],
          [["101", "lead", "01/02/2026 09:00"], ["101", "subscriber", "2026-01-01T09:00:00Z"]])
    with pytest.raises(crm_csv.CsvRejected) as info:
        load(wh, tmp_path, only(SHIPPED, "contacts", "lifecycle_stage_history"))
    assert (f"{tmp_path / 'lifecycle_stage_history.csv'}: 1 of 2 rows bad (50.00% > crm.csv_max_bad_share 1.00%); "
            "top reasons: lifecycle_stage_history.csv, unparseable Changed At ×1; first: line 2: "
            "lifecycle_stage_history.csv, unparseable "
            "Changed At: '01/02/2026 09:00'") in str(info.value)
    assert "contacts.csv: " not in str(info.value).replace("lifecycle_stage_history.csv", "")
    assert q(wh, "select status, rows_quarantined from ops.load_log") == [("rejected", 1)]
    assert q(wh, "select count(*) from ops.file_ledger") == [(0,)]


# -- header and encoding ----------------------------------------------------------------------------------------
def test_duplicate_header_names_fail_the_file_naming_them(wh, tmp_path):
    write(tmp_path / "contacts.csv", ["Record ID", "Email", "Last Modified Date", "Email", " Notes", "Notes"],
          [["1", "a@example.org", "2026-03-01T00:00:00Z", "b@example.org", "x", "y"]])
    with pytest.raises(LoadError, match=re.escape(
            f"{tmp_path / 'contacts.csv'}: duplicate column name(s) in the header: 'Email', 'Notes' — their values "
            "would overwrite each other")):
        load(wh, tmp_path)
    assert q(wh, "select status, error like '%%duplicate column name(s)%%' from ops.load_log") == [("failed", True)]
    assert q(wh, "select count(*) from ops.file_ledger") == [(0,)]
    assert q(wh, "select count(*) from raw.crm_contacts") == [(0,)]


@pytest.mark.parametrize(("encoding", "bom"), [
    ("utf-8", b""), ("utf-8", codecs.BOM_UTF8), ("utf-16-le", codecs.BOM_UTF16_LE),
    ("utf-16-be", codecs.BOM_UTF16_BE)])
def test_utf8_with_or_without_bom_and_utf16_with_bom_are_read(wh, tmp_path, encoding, bom):
    write(tmp_path / "contacts.csv", CONTACTS, [["101", "zoë@example.org", "lead", "", "2026-03-01T00:00:00Z"],
                                                ["102", "Łukasz@example.org", "lead", "", "2026-03-01T00:00:00Z"]],
          encoding=encoding, bom=bom)
    res = load(wh, tmp_path)
    assert (res["objects"]["contacts"]["rows_loaded"], res["objects"]["contacts"]["rows_quarantined"]) == (2, 0)
    assert q(wh, "select record_id, record->'properties'->>'email' from raw.crm_contacts order by 1") == [
        ("101", "zoë@example.org"), ("102", "Łukasz@example.org")]  # the header's first label matched too


def test_a_windows_1252_export_fails_naming_file_byte_and_line(wh, tmp_path):
    write(tmp_path / "contacts.csv", CONTACTS, [["101", "ada@example.org", "lead", "", "2026-03-01T00:00:00Z"],
                                                ["102", "zoë@example.org", "lead", "", "2026-03-01T00:00:00Z"]],
          encoding="cp1252")
    offset = (tmp_path / "contacts.csv").read_bytes().index(b"\xeb")
    with pytest.raises(LoadError) as info:
        load(wh, tmp_path)
    assert (f"{tmp_path / 'contacts.csv'}: not valid UTF-8 at byte {offset} (line 3): b'\\xeb' (invalid "
            "continuation byte); handoff reads UTF-8 (with or without BOM) and UTF-16 with a BOM") in str(info.value)
    [(status, error)] = q(wh, "select status, error from ops.load_log")
    assert status == "failed" and f"not valid UTF-8 at byte {offset} (line 3)" in error
    assert q(wh, "select count(*) from ops.file_ledger") == [(0,)]
    assert q(wh, "select count(*) from raw.crm_contacts") == [(0,)]  # the valid first row was not committed


@pytest.mark.parametrize(("content", "message"), [
    (csv_text(CONTACTS, []).encode("utf-16-le"),
     "NUL bytes from byte 1 on and no byte-order mark: UTF-16 without a BOM"),
    (codecs.BOM_UTF32_LE + csv_text(CONTACTS, []).encode("utf-32-le"), "UTF-32 text (byte-order mark ff fe 00 00)"),
    (b"", "empty file (not even a header row)"),
    (codecs.BOM_UTF16_LE + "Record ID,Email\r\n".encode("utf-16-le") + b"\x00\xd8A\x00",
     "not valid UTF-16 (LE) at byte 36 (line 2): b'\\x00\\xd8' (illegal UTF-16 surrogate)"),
])
def test_unreadable_files_fail_before_the_first_row_with_a_load_log_row(wh, tmp_path, content, message):
    (tmp_path / "contacts.csv").write_bytes(content)
    with pytest.raises(LoadError, match=re.escape(f"{tmp_path / 'contacts.csv'}: {message}")):
        load(wh, tmp_path)
    [(status, read, error)] = q(wh, "select status, rows_read, error from ops.load_log")
    assert (status, read) == ("failed", 0) and message in error
    assert q(wh, "select count(*) from ops.file_ledger") == [(0,)]


def test_a_missing_csv_folder_leaves_a_failed_load_log_row(wh, tmp_path):
    with pytest.raises(LoadError, match="CRM CSV folder .*/nope does not exist"):
        load(wh, tmp_path / "nope")
    assert q(wh, "select status, source from ops.load_log") == [("failed", str(tmp_path / "nope"))]


# -- dates --------------------------------------------------------------------------------------------------------
STAGE_DATE = "Became a Marketing Qualified Lead Date"  # the label another mapping change adds for contacts


def test_every_date_column_is_parsed_as_configured_and_written_as_iso_utc(wh, tmp_path):
    mapping = {
        "contacts": {"id_column": "Record ID", "updated_at_column": "Last Modified Date",
                     "created_at_column": "Create Date",
                     "columns": {"Create Date": "createdate", "Last Modified Date": "lastmodifieddate",
                                 STAGE_DATE: "hs_lifecyclestage_marketingqualifiedlead_date",
                                 "Renewal": "renewal_on", "Shoe Size": "shoe_size"},
                     "date_columns": ["Renewal"]},
        "lifecycle_stage_history": {"id_column": "Contact ID",
                                    "columns": {"Lifecycle Stage": "value", "Changed At": "timestamp"}},
        "deals": {"id_column": "Record ID", "updated_at_column": "Last Modified Date",
                  "columns": {"Close Date": "closedate", "Last Modified Date": "hs_lastmodifieddate"},
                  "dates": {"format": "%Y%m%d %H%M", "timezone": "Asia/Tokyo"}},
        "meetings": {"id_column": "Record ID", "updated_at_column": "Last Modified Date",
                     "columns": {"Activity date": "hs_timestamp"}, "dates": {"format": "iso"}},
    }
    write(tmp_path / "contacts.csv", ["Record ID", "Create Date", "Last Modified Date", STAGE_DATE, "Renewal",
                                      "Shoe Size"],
          [["101", "01.02.2026", "11/03/2026 14:05", "5-3-2026 9:30:15 AM", "2026-12-31", "11/03/2026"],
           ["102", "", "11/03/2026 14:05", "", "", "9"]])
    write(tmp_path / "lifecycle_stage_history.csv", ["Contact ID", "Lifecycle Stage", "Changed At"],
          [["101", "lead", "01/02/2026 10:00"], ["101", "marketingqualifiedlead", "05/03/2026 09:30"]])
    write(tmp_path / "deals.csv", ["Record ID", "Close Date", "Last Modified Date"],
          [["9", "20260331 0900", "20260311 2330"]])
    write(tmp_path / "meetings.csv", ["Record ID", "Activity date", "Last Modified Date"],
          [["5", "2026-03-10T09:00:00+01:00", "1773238500000"]])
    load(wh, tmp_path, mapping, dates={"format": "day_first", "timezone": "Europe/London"})
    [(contact,)] = q(wh, "select record from raw.crm_contacts where record_id = '101'")
    assert contact["createdAt"] == contact["properties"]["createdate"] == "2026-02-01T00:00:00.000Z"
    assert contact["updatedAt"] == contact["properties"]["lastmodifieddate"] == "2026-03-11T14:05:00.000Z"
    assert contact["properties"]["hs_lifecyclestage_marketingqualifiedlead_date"] == "2026-03-05T09:30:15.000Z"
    assert contact["properties"]["renewal_on"] == "2026-12-31T00:00:00.000Z"  # ISO-8601 is read in day_first too
    assert contact["properties"]["shoe_size"] == "11/03/2026"  # not a date column: as written
    assert [(h["value"], h["timestamp"]) for h in contact["propertiesWithHistory"]["lifecyclestage"]] == [
        ("marketingqualifiedlead", "2026-03-05T09:30:00.000Z"), ("lead", "2026-02-01T10:00:00.000Z")]
    [(other,)] = q(wh, "select record from raw.crm_contacts where record_id = '102'")
    assert (other["createdAt"], other["properties"]["createdate"], other["properties"]["renewal_on"]) == (
        None, None, None)  # empty date cells are null
    [(deal, deal_updated)] = q(wh, "select record, updated_at from raw.crm_deals")
    assert deal["properties"]["closedate"] == "2026-03-31T00:00:00.000Z"  # 09:00 in Tokyo
    assert deal["updatedAt"] == deal["properties"]["hs_lastmodifieddate"] == "2026-03-11T14:30:00.000Z"
    assert deal_updated == datetime(2026, 3, 11, 14, 30, tzinfo=UTC)
    [(meeting,)] = q(wh, "select record from raw.crm_meetings")
    assert meeting["properties"]["hs_timestamp"] == "2026-03-10T08:00:00.000Z"  # an explicit offset is kept
    assert meeting["updatedAt"] == "2026-03-11T14:15:00.000Z"  # epoch milliseconds
    assert q(wh, "select count(*) from raw.quarantine") == [(0,)]


def test_an_unparseable_date_in_any_date_column_quarantines_naming_line_column_and_value(wh, tmp_path):
    write(tmp_path / "deals.csv", ["Record ID", "Create Date", "Close Date", "Last Modified Date"],
          [["1", "2026-01-01T00:00:00Z", "2026-03-31", "2026-03-01T00:00:00Z"],
           ["2", "2026-01-01T00:00:00Z", "31/02/2026", "2026-03-01T00:00:00Z"],
           ["3", "yesterday", "", "2026-03-01T00:00:00Z"],
           ["4", "2026-01-01T00:00:00Z", "", ""]])
    res = load(wh, tmp_path, only(SHIPPED, "deals"), max_bad_share=1.0)
    assert (res["objects"]["deals"]["rows_loaded"], res["objects"]["deals"]["rows_quarantined"]) == (1, 3)
    assert q(wh, "select _source, _line, record_ref, reason from raw.quarantine order by _line") == [
        (str(tmp_path / "deals.csv"), 3, "2", "unparseable Close Date: '31/02/2026'"),
        (str(tmp_path / "deals.csv"), 4, "3", "unparseable Create Date: 'yesterday'"),
        (str(tmp_path / "deals.csv"), 5, "4", "unparseable Last Modified Date: ''")]
    assert q(wh, "select record->'properties'->>'closedate' from raw.crm_deals") == [("2026-03-31T00:00:00.000Z",)]


def test_a_compact_date_in_iso_format_is_quarantined_not_read_as_epoch_milliseconds(wh, tmp_path):
    write(tmp_path / "deals.csv", ["Record ID", "Create Date", "Close Date", "Last Modified Date"],
          [["1", "2026-01-01T00:00:00Z", "20260311", "1773238500000"],  # 13 digits: epoch milliseconds
           ["2", "2026-01-01T00:00:00Z", "", "20260311"],
           ["3", "100000000000", "", "2026-03-01T00:00:00Z"]])  # 12 digits: epoch ms (1973-03-03)
    res = load(wh, tmp_path, only(SHIPPED, "deals"), max_bad_share=1.0)
    assert (res["objects"]["deals"]["rows_loaded"], res["objects"]["deals"]["rows_quarantined"]) == (1, 2)
    assert q(wh, "select _source, _line, record_ref, reason from raw.quarantine order by _line") == [
        (str(tmp_path / "deals.csv"), 2, "1", "unparseable Close Date: '20260311'"),
        (str(tmp_path / "deals.csv"), 3, "2", "unparseable Last Modified Date: '20260311'")]
    assert q(wh, "select record->>'createdAt' from raw.crm_deals") == [("1973-03-03T09:46:40.000Z",)]
    reader = crm_csv_reading.DateReader(sources.CsvDates())
    assert reader.parse("1773238500000") == datetime(2026, 3, 11, 14, 15, tzinfo=UTC)
    assert [reader.parse(v) for v in ("20260311", "99999999999", "0")] == [None, None, None]


def test_an_objects_timezone_alone_keeps_the_csv_wide_format(wh, tmp_path):
    """`dates: {timezone: ...}` on an object changes its zone only: the format stays crm.csv_dates' month_first."""
    write(tmp_path / "contacts.csv", CONTACTS, US_ROWS)
    mapping = contacts_mapping(dates={"timezone": "America/New_York"})
    load(wh, tmp_path, mapping, dates={"format": "month_first", "timezone": "UTC"})
    assert q(wh, "select record->>'updatedAt', record->>'createdAt' from raw.crm_contacts order by record_id") == [
        ("2026-03-11T18:05:00.000Z", "2026-03-01T14:00:00.000Z"),  # 14:05 EDT; 09:00 EST
        ("2026-03-11T18:05:00.000Z", "2026-03-02T14:00:00.000Z")]
    assert q(wh, "select count(*) from raw.quarantine") == [(0,)]


def test_a_value_no_format_reads_is_tried_once_per_format(monkeypatch):
    tried: list[str] = []

    class Recording(datetime):
        @classmethod
        def strptime(cls, text, fmt):
            tried.append(fmt)
            return datetime.strptime(text, fmt)

    monkeypatch.setattr(crm_csv_reading, "datetime", Recording)
    reader = crm_csv_reading.DateReader(sources.CsvDates("day_first"))
    assert reader.parse("31/12/2026") == datetime(2026, 12, 31, tzinfo=UTC)
    tried.clear()
    assert reader.parse("not a date") is None
    assert sorted(tried) == sorted(reader.formats)  # each format once, the last that worked first
    assert tried[0] == "%d/%m/%Y"


def test_a_column_mapped_to_an_hs_v2_stage_date_is_parsed_as_a_date(wh, tmp_path):
    mapping = contacts_mapping(columns={"Email": "email", "Last Modified Date": "lastmodifieddate",
                                        "Date entered MQL": "hs_v2_date_entered_marketingqualifiedlead",
                                        "Date exited MQL": "hs_v2_date_exited_marketingqualifiedlead"})
    write(tmp_path / "contacts.csv", ["Record ID", "Email", "Last Modified Date", "Date entered MQL",
                                      "Date exited MQL"],
          [["101", "a@example.org", "03/11/2026 14:05", "03/05/2026 9:30 AM", "03/10/2026 10:00"],
           ["102", "b@example.org", "03/11/2026 14:05", "in March", ""]])
    res = load(wh, tmp_path, mapping, dates={"format": "month_first"}, max_bad_share=1.0)
    assert (res["objects"]["contacts"]["rows_loaded"], res["objects"]["contacts"]["rows_quarantined"]) == (1, 1)
    [(props,)] = q(wh, "select record->'properties' from raw.crm_contacts")
    assert (props["hs_v2_date_entered_marketingqualifiedlead"], props["hs_v2_date_exited_marketingqualifiedlead"]) == (
        "2026-03-05T09:30:00.000Z", "2026-03-10T10:00:00.000Z")
    assert q(wh, "select _line, record_ref, reason from raw.quarantine") == [
        (3, "102", "unparseable Date entered MQL: 'in March'")]
