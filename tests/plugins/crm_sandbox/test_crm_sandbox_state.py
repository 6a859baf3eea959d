"""Persistence across restarts, `--init-from` sample loading and the CLI entry point."""

from __future__ import annotations

import argparse
import gzip
from pathlib import Path

import orjson
import pytest
from handoff.crm_sandbox import add_arguments, init_from, main, start_sandbox
from handoff.crm_sandbox.cli import faults_from_args
from sandbox_support import TOKEN, FakeClock, Http, company, contact, meeting, owner


def _write_sample(root: Path, contacts: int) -> Path:
    crm = root / "crm"
    crm.mkdir(parents=True, exist_ok=True)
    objects = {"owners": [owner(1), owner(2)], "companies": [company(500)],
               "contacts": [contact(i) for i in range(1, contacts + 1)], "deals": [],
               "meetings": [meeting(700, 1)], "calls": []}
    for name, rows in objects.items():
        with gzip.open(crm / f"{name}.jsonl.gz", "wb") as fh:
            fh.write(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    return root


def test_state_survives_a_restart(state_path):
    clock = FakeClock()
    with start_sandbox(state_path, token=TOKEN, rate_limit=None, clock=clock) as first:
        http = Http(first.url)
        task = http.post("/crm/v3/objects/tasks", {"properties": {"hs_timestamp": "2026-01-02T00:00:00Z",
                                                                  "handoff_dedupe_key": "persist-1"}}).json()
        assert http.patch("/crm/v3/objects/contacts/1", {"properties": {"lifecyclestage": "customer"}}).ok
        assert http.delete("/crm/v3/objects/contacts/2").status_code == 204
    with start_sandbox(state_path, token=TOKEN, rate_limit=None, clock=clock) as second:
        http = Http(second.url)
        assert http.get(f"/crm/v3/objects/tasks/{task['id']}").status_code == 200
        assert http.get("/crm/v3/objects/contacts/1", properties="lifecyclestage").json()["properties"][
            "lifecyclestage"] == "customer"
        assert [r["id"] for r in http.get("/crm/v3/objects/contacts", archived="true").json()["results"]] == [
            "2", "26"]
        again = http.post("/crm/v3/objects/tasks", {"properties": {"hs_timestamp": "2026-01-02T00:00:00Z",
                                                                   "handoff_dedupe_key": "persist-1"}})
        assert again.status_code == 409
        newer = http.post("/crm/v3/objects/tasks", {"properties": {"hs_timestamp": "2026-01-02T00:00:00Z"}}).json()
        assert int(newer["id"]) == int(task["id"]) + 1  # ids keep counting, never reused


def test_init_from_loads_the_sample_and_a_reinit_replaces(tmp_path):
    state = tmp_path / "state.sqlite3"
    sample = _write_sample(tmp_path / "sample", contacts=30)
    counts = init_from(state, sample)
    assert counts == {"owners": 2, "companies": 1, "contacts": 30, "deals": 0, "meetings": 1, "calls": 0,
                      "tasks": 0}
    _write_sample(tmp_path / "sample", contacts=3)
    assert init_from(state, sample / "crm")["contacts"] == 3  # the crm/ folder itself works too
    with start_sandbox(state, token=TOKEN, rate_limit=None) as handle:
        body = Http(handle.url).get("/crm/v3/objects/contacts", limit=100).json()
        assert [r["id"] for r in body["results"]] == ["1", "2", "3"]


def test_init_from_an_empty_folder_says_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="handoff sample"):
        init_from(tmp_path / "s.sqlite3", tmp_path)


def test_cli_init_only(tmp_path, capsys):
    state = tmp_path / "cli" / "state.sqlite3"
    sample = _write_sample(tmp_path / "sample", contacts=4)
    assert main(["--state", str(state), "--init-from", str(sample), "--init-only"]) == 0
    assert "contacts 4" in capsys.readouterr().out
    assert main(["--state", str(state), "--rate-limit", "ten/10", "--token", "x"]) == 2
    assert main(["--state", str(state), "--fault-503", "1.5", "--token", "x"]) == 2


def test_cli_fault_flags_map_to_faults():
    parser = add_arguments(argparse.ArgumentParser())
    args = parser.parse_args(["--token", "t", "--fault-seed", "9", "--fault-429", "0.1", "--fault-503", "0.2",
                              "--fault-timeout", "0.05", "--fault-timeout-mode", "late", "--fault-slow", "0.5",
                              "--fault-slow-ms", "200", "--fault-row-errors", "0.25", "--fault-down"])
    faults = faults_from_args(args)
    assert (faults.seed, faults.rate_limit_storm, faults.server_error, faults.timeout, faults.timeout_mode,
            faults.slow, faults.slow_ms, faults.row_error_rate, faults.down) == (
        9, 0.1, 0.2, 0.05, "late", 0.5, 200.0, 0.25, True)


def test_init_from_a_generated_sample_gives_contacts_their_stage_dates(tmp_path):
    """The sample's contacts carry their lifecyclestage history; initialised into the sandbox, each has the stage
    dates HubSpot would have set: the first time its history entered the stage."""
    from handoff.sample import generate

    from tests.plugins.sample.sample_support import SMALL

    sample = tmp_path / "sample"
    generate(sample, seed=7, workers=1, **SMALL)
    state = tmp_path / "state.sqlite3"
    init_from(state, sample)
    props = ",".join(f"{p}{s}{q}" for s in ("lead", "marketingqualifiedlead", "salesqualifiedlead")
                     for p, q in (("hs_lifecyclestage_", "_date"), ("hs_v2_date_entered_", "")))
    checked = {"lead": 0, "marketingqualifiedlead": 0, "salesqualifiedlead": 0}
    with start_sandbox(state, token=TOKEN, rate_limit=None) as handle:
        http = Http(handle.url)
        after = None
        while True:
            page = http.get("/crm/v3/objects/contacts", limit=50, properties=props,
                            propertiesWithHistory="lifecyclestage", **({"after": after} if after else {})).json()
            for c in page["results"]:
                first: dict[str, str] = {}
                for entry in sorted(c["propertiesWithHistory"]["lifecyclestage"], key=lambda e: e["timestamp"]):
                    first.setdefault(entry["value"], entry["timestamp"])
                for stage in checked:
                    became = c["properties"][f"hs_lifecyclestage_{stage}_date"]
                    assert became == c["properties"][f"hs_v2_date_entered_{stage}"]
                    if stage in first:
                        assert became is not None and became[:19] == first[stage][:19], (c["id"], stage)
                        assert became.endswith("Z") and len(became) == 24  # ISO-8601 with milliseconds
                        checked[stage] += 1
                    else:
                        assert became is None, (c["id"], stage)
            after = (page.get("paging") or {}).get("next", {}).get("after")
            if not after:
                break
    assert checked["lead"] > 100 and checked["salesqualifiedlead"] > 0, checked  # (the sample's MQLs come later)
