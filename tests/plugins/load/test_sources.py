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
])
def test_errors_name_the_key(data, message):
    with pytest.raises(sources.SourcesError) as info:
        sources.parse(data, where="sources.yml")
    assert message in str(info.value)
