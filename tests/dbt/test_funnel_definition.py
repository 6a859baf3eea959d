"""handoff.funnel: validation errors name the rule/key and the problem; the committed seeds match config/funnel.yml."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
import yaml
from handoff import funnel, settings

BASE = settings.FUNNEL_DEFINITION.read_text(encoding="utf-8")


def _doc() -> dict:
    return yaml.safe_load(BASE)


def _with(mutate) -> str:
    doc = _doc()
    mutate(doc)
    return yaml.safe_dump(doc, sort_keys=False)


def _rule(doc: dict, rule_id: str) -> dict:
    return next(r for r in doc["scoring"]["rules"] if r["id"] == rule_id)


def _problems(text: str) -> str:
    with pytest.raises(funnel.FunnelDefinitionError) as exc:
        funnel.loads(text, source="funnel.yml")
    return str(exc.value)


def test_default_definition_is_valid():
    defn = funnel.load()
    assert defn.version == "2026.11.1"
    assert len(defn.rules) == 26
    assert defn.mql_score_threshold == 50 and defn.half_life_days == 30
    assert [r.rule_id for r in defn.rules if r.disqualify] == ["neg_competitor", "neg_job_applicant"]


@pytest.mark.parametrize(("mutate", "expected"), [
    (lambda d: _rule(d, "web_visit").update(feature="sesions"), ["rule 'web_visit'", "unknown feature 'sesions'"]),
    (lambda d: _rule(d, "repeat_visitor").update(operator="=>"), ["rule 'repeat_visitor'", "bad operator '=>'"]),
    (lambda d: _rule(d, "fit_revenue").update(value="ten million"),
     ["rule 'fit_revenue'", "needs a number, got 'ten million'"]),
    (lambda d: _rule(d, "fit_persona").update(operator=">="), ["rule 'fit_persona'", "does not apply to text"]),
    (lambda d: _rule(d, "fit_industry").update(value="COMPUTER_SOFTWARE"),
     ["rule 'fit_industry'", "needs a non-empty list of strings"]),
    (lambda d: d["scoring"].update(half_life_days=-5), ["scoring.half_life_days", "greater than 0, got -5"]),
    (lambda d: d["scoring"].update(half_life_days=0), ["scoring.half_life_days", "greater than 0, got 0"]),
    (lambda d: d["scoring"]["rules"].append(dict(_rule(d, "web_visit"))), ["duplicate rule id 'web_visit'"]),
    (lambda d: _rule(d, "form_fill").pop("points"), ["rule 'form_fill'", "missing `points`"]),
    (lambda d: _rule(d, "form_fill").update(window_days=0),
     ["rule 'form_fill'", "`window_days` must be greater than 0"]),
    (lambda d: _rule(d, "form_fill").update(window_days=-7), ["rule 'form_fill'", "greater than 0, got -7"]),
    (lambda d: _rule(d, "neg_student").update(points=20), ["rule 'neg_student'", "needs negative `points`"]),
    (lambda d: _rule(d, "neg_careers_browsing").update(operator="<", value=3),
     ["would hold for a contact with no activity"]),
    (lambda d: d["conversion"].update(segments=["all", "region"]), ["conversion.segments", "unknown value 'region'"]),
    (lambda d: d["conversion"].update(sales_cycle_lag_periods=5),
     ["sales_cycle_lag_periods 5 is not in lags_to_report"]),
    (lambda d: d["conversion"].update(cohort_grain="quarter"), ["cohort_grain must be month or week, got 'quarter'"]),
    (lambda d: d["conversion"]["healthy_band"].update(min_rate=0.5, max_rate=0.2),
     ["healthy_band: min_rate 0.5 is greater than max_rate 0.2"]),
    (lambda d: d["events"].update({"Webinar Attended": "webinar_views"}),
     ["'Webinar Attended' maps to unknown feature"]),
    (lambda d: d["sql"].update(signals=["demo_requests", "fax_received"]),
     ["sql.signals", "unknown value 'fax_received'"]),
    (lambda d: d["evidence"].update(mql="crm_only"),
     ["evidence.mql must be one of rules_and_crm, rules, crm, got 'crm_only'"]),
    (lambda d: d["evidence"].update(customer="rules"), ["evidence.customer can only be crm"]),
    (lambda d: d["evidence"].update(mqls="crm"), ["evidence: unknown key 'mqls'"]),
    (lambda d: d["evidence"].update(rules_from="March"), ["evidence.rules_from must be a date YYYY-MM-DD"]),
    (lambda d: (d["evidence"].update(sql="crm"), d["sql"].update(crm_lifecycle_stages=[])),
     ["evidence.sql is crm, but `sql.crm_lifecycle_stages` lists no CRM lifecycle stage"]),
])
def test_invalid_definitions_are_rejected_with_the_rule_and_problem(mutate, expected):
    message = _problems(_with(mutate))
    for fragment in expected:
        assert fragment in message, message


def test_errors_carry_the_line_number():
    text = BASE.replace("feature: sessions,", "feature: sessionz,", 1)
    line = next(i for i, ln in enumerate(text.splitlines(), start=1) if "sessionz" in ln)
    assert f"line {line}: rule 'web_visit'" in _problems(text)


def test_every_problem_is_reported_at_once():
    def mutate(d):
        _rule(d, "web_visit").update(feature="nope")
        d["mql"].update(score_threshold=-1)
    message = _problems(_with(mutate))
    assert "unknown feature 'nope'" in message and "mql.score_threshold" in message


def test_evidence_defaults_to_rules_and_crm_and_compiles_into_the_settings(tmp_path: Path):
    doc = _doc()
    doc.pop("evidence")  # a definition written before the key existed
    assert funnel.loads(yaml.safe_dump(doc, sort_keys=False)).evidence == {"mql": "rules_and_crm",
                                                                          "sql": "rules_and_crm"}
    doc["evidence"] = {"lead": "crm", "mql": "crm", "sql": "rules", "opportunity": "crm", "customer": "crm"}
    defn = funnel.loads(yaml.safe_dump(doc, sort_keys=False))
    assert defn.evidence == {"mql": "crm", "sql": "rules"}
    funnel.compile(defn, tmp_path)
    settings_rows = dict(csv.reader(io.StringIO((tmp_path / "funnel_settings.csv").read_text())))
    assert (settings_rows["mql_evidence"], settings_rows["sql_evidence"]) == ("crm", "rules")
    assert "evidence_rules_from" not in settings_rows  # none: the rules count always
    doc["evidence"]["rules_from"] = "2026-03-01"
    defn = funnel.loads(yaml.safe_dump(doc, sort_keys=False))
    funnel.compile(defn, tmp_path)
    settings_rows = dict(csv.reader(io.StringIO((tmp_path / "funnel_settings.csv").read_text())))
    assert settings_rows["evidence_rules_from"] == "2026-03-01"


def test_committed_seeds_are_in_sync_with_the_definition():
    stale = funnel.out_of_sync(funnel.load())
    assert stale == [], f"run `handoff funnel compile`: {stale} differ from config/funnel.yml"


def test_compile_writes_rules_as_data(tmp_path: Path):
    doc = _doc()
    _rule(doc, "pricing_page").update(points=7, cap=21)
    defn = funnel.loads(yaml.safe_dump(doc, sort_keys=False))
    funnel.compile(defn, tmp_path)
    rows = {r["rule_id"]: r for r in csv.DictReader(io.StringIO((tmp_path / "funnel_rules.csv").read_text()))}
    assert rows["pricing_page"]["points"] == "7" and rows["pricing_page"]["cap"] == "21"
    assert rows["pricing_page"]["decays"] == "true" and rows["repeat_visitor"]["decays"] == "false"
    lists = list(csv.DictReader(io.StringIO((tmp_path / "funnel_lists.csv").read_text())))
    assert {"list_name": "rule.fit_cms", "value": "hubspot"} in lists
    settings_rows = dict(csv.reader(io.StringIO((tmp_path / "funnel_settings.csv").read_text())))
    assert settings_rows["mql_score_threshold"] == "50" and settings_rows["cohort_grain"] == "month"
    bands = list(csv.DictReader(io.StringIO((tmp_path / "company_size_bands.csv").read_text())))
    assert bands[-1] == {"band": "5001+", "min_employees": "5001", "max_employees": "", "band_order": "5"}


def test_cli_check_and_compile(tmp_path: Path, capsys):
    bad = tmp_path / "funnel.yml"
    bad.write_text(BASE.replace("half_life_days: 30", "half_life_days: -1"))
    assert funnel.main(["check", "--definition", str(bad), "--seeds-dir", str(tmp_path)]) == 2
    assert "half_life_days" in capsys.readouterr().err
    assert funnel.main(["check", "--seeds-dir", str(tmp_path)]) == 1  # valid, but no seeds there yet
    assert funnel.main(["compile", "--seeds-dir", str(tmp_path)]) == 0
    assert funnel.main(["check", "--seeds-dir", str(tmp_path)]) == 0


def test_errors_name_the_file_the_line_of_the_wrong_key_and_the_rule():
    """A rule written as a block mapping: the problem points at the line of the wrong key, not the rule's first."""
    block = ("    - id: web_visit\n      kind: count\n      feature: sessionz\n      window_days: 30\n"
             "      points: 1\n      cap: 10\n")
    flow = next(ln for ln in BASE.splitlines(keepends=True) if "{id: web_visit," in ln)
    text = BASE.replace(flow, block, 1)
    line = next(i for i, ln in enumerate(text.splitlines(), start=1) if "sessionz" in ln)
    message = _problems(text)
    assert f"funnel.yml, line {line}: rule 'web_visit': unknown feature 'sessionz'" in message, message
    text = BASE.replace("half_life_days: 30", "half_life_days: -3", 1)
    line = next(i for i, ln in enumerate(text.splitlines(), start=1) if "half_life_days: -3" in ln)
    assert f"funnel.yml, line {line}: `scoring.half_life_days` must be greater than 0" in _problems(text)


def test_a_key_written_twice_is_named_with_its_line():
    text = BASE.replace("  score_threshold: 50\n", "  score_threshold: 50\n  score_threshold: 60\n", 1)
    line = next(i for i, ln in enumerate(text.splitlines(), start=1) if "score_threshold: 60" in ln)
    assert f"funnel.yml, line {line}: key 'score_threshold' appears twice" in _problems(text)


def test_the_sample_and_the_push_read_the_definition_through_the_one_model(tmp_path: Path):
    """Neither keeps its own reading of the YAML: an invalid file fails them with the model's message."""
    from handoff.push import config as push_config  # noqa: PLC0415
    from handoff.sample.config import load_funnel  # noqa: PLC0415

    assert load_funnel() == funnel.load()
    assert push_config.sla_hours() == funnel.load().sql_follow_up_hours == 24
    bad = tmp_path / "funnel.yml"
    bad.write_text(BASE.replace("feature: sessions,", "feature: sessionz,", 1))
    for read in (load_funnel, push_config.sla_hours):
        with pytest.raises(funnel.FunnelDefinitionError, match=r"line \d+: rule 'web_visit': unknown feature"):
            read(bad)
