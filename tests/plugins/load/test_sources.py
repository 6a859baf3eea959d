"""config/sources.yml: defaults, expansion, and errors that name the key."""

from __future__ import annotations

import pytest
from handoff import settings, sources


def test_shipped_config_parses_and_maps_every_sample_object():
    cfg = sources.load()
    assert cfg.crm.mode in ("api", "csv")
    assert set(cfg.crm.csv_mapping) == {"owners", "companies", "contacts", "deals", "meetings", "calls",
                                        "lifecycle_stage_history"}
    assert cfg.crm.csv_mapping["contacts"].id_column == "Record ID"
    assert cfg.analytics.max_bad_share == 0.01


def test_defaults_and_expansion(monkeypatch, tmp_path):
    monkeypatch.setenv("HANDOFF_HOME", str(tmp_path))
    cfg = sources.parse({})
    assert cfg.analytics.landing == tmp_path / "sample" / "analytics"
    assert (cfg.analytics.max_bad_share, cfg.analytics.max_field_bytes) == (0.01, 65536)
    monkeypatch.delenv("HANDOFF_HOME")
    cfg = sources.parse({"analytics": {"landing": "${HANDOFF_HOME:-.local}/x"}})
    assert cfg.analytics.landing == settings.REPO_ROOT / ".local" / "x"
    monkeypatch.setenv("HOME", str(tmp_path))
    assert sources.parse({"analytics": {"landing": "~/drop"}}).analytics.landing == tmp_path / "drop"


@pytest.mark.parametrize(("data", "message"), [
    ({"crm": {"mode": "ftp"}}, "crm.mode must be 'api' or 'csv'"),
    ({"crm": {"mode": "csv"}}, "crm.csv_mapping is required when mode is csv"),
    ({"crm": {"csv_mapping": {"contacts": {"columns": {}}}}}, "crm.csv_mapping.contacts.id_column is required"),
    ({"crm": {"csv_mapping": {"widgets": {"id_column": "x"}}}}, "crm.csv_mapping.widgets: unknown object"),
    ({"analytics": {"max_bad_share": 2}}, "analytics.max_bad_share must be between 0 and 1"),
    ({"analytics": {"max_bad_share": "lots"}}, "analytics.max_bad_share must be a number"),
    ({"analytics": {"max_field_bytes": 1.5}}, "analytics.max_field_bytes must be an integer"),
    ({"analytics": {"landing": "s3://bucket/x"}}, "analytics.landing: object-store URLs are not supported"),
    ({"analytics": {"landing": "${NOPE_NOT_SET}/x"}}, "environment variable NOPE_NOT_SET is not set"),
    ({"analytics": {"landng": "x"}}, "analytics: unknown key(s) landng"),
    ({"crm": {"csv_max_bad_share": -0.1}}, "crm.csv_max_bad_share must be between 0 and 1, got -0.1"),
    ({"crm": {"csv_dates": {"format": "dd/mm/yyyy"}}},
     "crm.csv_dates.format must be one of iso, day_first, month_first or a strptime format"),
    ({"crm": {"csv_dates": {"timezone": "Mars/Olympus"}}},
     "crm.csv_dates.timezone must be an IANA time zone such as UTC or Europe/Berlin, got 'Mars/Olympus'"),
    ({"crm": {"csv_dates": {"fmt": "iso"}}}, "crm.csv_dates: unknown key(s) fmt"),
    ({"crm": {"csv_mapping": {"deals": {"id_column": "Record ID", "date_columns": ["Renewal"]}}}},
     "crm.csv_mapping.deals.date_columns: 'Renewal' not among the columns mapped in columns:"),
    ({"crm": {"csv_mapping": {"deals": {"id_column": "Record ID", "dates": {"format": "day_frist"}}}}},
     "crm.csv_mapping.deals.dates.format must be one of"),
])
def test_errors_name_the_key(data, message):
    with pytest.raises(sources.SourcesError) as info:
        sources.parse(data, where="sources.yml")
    assert message in str(info.value)


def test_date_columns_explicit_known_hubspot_and_stage_dates():
    cfg = sources.parse({"crm": {"csv_dates": {"format": "day_first", "timezone": "Europe/Berlin"}, "csv_mapping": {
        "contacts": {"id_column": "Record ID", "updated_at_column": "Last Modified Date",
                     "columns": {"Became a Marketing Qualified Lead Date":
                                 "hs_lifecyclestage_marketingqualifiedlead_date",
                                 "Renewal": "renewal_on", "Email": "email", "Close Date": "closedate"},
                     "date_columns": ["Renewal"], "dates": {"format": "%d.%m.%Y"}},
        "lifecycle_stage_history": {"id_column": "Contact ID", "columns": {"Changed At": "timestamp",
                                                                           "Lifecycle Stage": "value"}}}}})
    assert cfg.crm.csv_dates == sources.CsvDates("day_first", "Europe/Berlin")
    contacts = cfg.crm.csv_mapping["contacts"]
    assert contacts.dates == sources.CsvDates("%d.%m.%Y", "Europe/Berlin")  # timezone from crm.csv_dates
    assert [label for label in ("Last Modified Date", "Became a Marketing Qualified Lead Date", "Renewal", "Email",
                                "Close Date") if contacts.is_date_column(label)] == [
        "Last Modified Date", "Became a Marketing Qualified Lead Date", "Renewal", "Close Date"]
    history = cfg.crm.csv_mapping["lifecycle_stage_history"]
    assert (history.is_date_column("Changed At"), history.is_date_column("Lifecycle Stage")) == (True, False)
    assert sources.load().crm.csv_max_bad_share == 0.01  # the shipped default


def test_an_objects_dates_inherit_crm_csv_dates_key_by_key():
    cfg = sources.parse({"crm": {"csv_dates": {"format": "month_first", "timezone": "America/New_York"},
                                 "csv_mapping": {
        "contacts": {"id_column": "Record ID", "dates": {"timezone": "Europe/Berlin"}},
        "deals": {"id_column": "Record ID", "dates": {"format": "day_first"}},
        "calls": {"id_column": "Record ID", "dates": {}},
        "meetings": {"id_column": "Record ID"}}}})
    got = {obj: m.dates for obj, m in cfg.crm.csv_mapping.items()}
    assert got == {"contacts": sources.CsvDates("month_first", "Europe/Berlin"),
                   "deals": sources.CsvDates("day_first", "America/New_York"),
                   "calls": sources.CsvDates("month_first", "America/New_York"),
                   "meetings": None}  # None: crm.csv_dates itself
    # without crm.csv_dates, the defaults (iso, UTC) fill the keys not given
    alone = sources.parse({"crm": {"csv_mapping": {"contacts": {"id_column": "Record ID",
                                                                "dates": {"timezone": "Europe/Berlin"}}}}})
    assert alone.crm.csv_mapping["contacts"].dates == sources.CsvDates("iso", "Europe/Berlin")


@pytest.mark.parametrize(("name", "is_date"), [
    ("hs_lifecyclestage_marketingqualifiedlead_date", True),
    ("hs_date_entered_salesqualifiedlead", True), ("hs_date_exited_lead", True),
    ("hs_v2_date_entered_marketingqualifiedlead", True), ("hs_v2_date_exited_salesqualifiedlead", True),
    ("hs_v2_date_entered_1234567", True),  # a custom stage's id
    ("hs_v2_time_in_lead", False), ("hs_v2_date_entered_", False), ("email", False),
])
def test_hubspot_stage_date_properties_v1_and_v2(name, is_date):
    assert sources.is_hubspot_date_property(name) is is_date
    mapping = sources.parse_csv_mapping({"contacts": {"id_column": "Record ID", "columns": {"Label": name}}})
    assert mapping["contacts"].is_date_column("Label") is is_date
