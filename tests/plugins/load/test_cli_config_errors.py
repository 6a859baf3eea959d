"""An invalid config/sources.yml reaches the ``handoff`` CLI user as one ``handoff: error:`` line, not a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from handoff import cli, local_services, sources


@pytest.mark.parametrize(("yml", "message"), [
    ("crm:\n  mode: ftp\n", "crm.mode must be 'api' or 'csv', got 'ftp'"),
    ("crm:\n  mode: api\n  csv_dates: {format: us}\n", "crm.csv_dates.format must be one of iso, day_first"),
    ("crm:\n  mode: api\n  csv_max_bad_share: 2\n", "crm.csv_max_bad_share must be between 0 and 1, got 2"),
    ("crm: [\n", "not valid YAML: expected the node content, but found '<stream end>' at line 2, column 1"),
])
def test_a_bad_sources_yml_is_one_error_line(monkeypatch, tmp_path: Path, yml: str, message: str) -> None:
    bad = tmp_path / "sources.yml"
    bad.write_text(yml)
    monkeypatch.setattr(sources, "DEFAULT_PATH", bad)
    monkeypatch.delenv(local_services.CRM_ENV, raising=False)  # else `run` would not read crm.mode
    monkeypatch.setattr(cli, "_require_warehouse", lambda: None)
    with pytest.raises(SystemExit) as info:
        cli.main(["run", "--date", cli.yesterday().isoformat()])
    text = str(info.value.code)  # a string code: printed to stderr, exit status 1
    assert text.startswith(f"handoff: error: {bad}: ")
    assert message in text
    assert "\n" not in text
