"""The channel ranking at the size the generator plants it for: 5,000 contacts × 180 days through real dbt.

The 800-contact module (test_dbt_models.py) proves each channel's MQLs and SQLs equal what the sample realized,
but its 15–50 MQLs per channel are too few for an exact order. At 5,000 × 180 the planted propensities are far
enough apart: the conversion handoff measures from its own rule-based stages (dim_contacts: MQLs that became SQLs)
ranks the channels exactly as planted; the complete cohort cells of the conversion mart, which hold only the
MQLs old enough, put the same three channels on top and the same three at the bottom.
About two minutes here, so it is a soak test (make test-soak).
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from fractions import Fraction

import psycopg
import pytest
from handoff import dbt_runner
from rawfill import drop_dbt_relations, fill, truncate_raw

END = date(2026, 11, 30)

pytestmark = pytest.mark.soak


def _rows(conninfo: str, query: str) -> list[tuple]:
    with psycopg.connect(conninfo) as conn:
        return conn.execute(query).fetchall()


def test_at_5000_contacts_the_measured_channel_conversion_ranks_as_planted(wh_target, tmp_path):
    from handoff import sample  # noqa: PLC0415

    out = tmp_path / "sample"
    sample.generate(out, seed=7, contacts=5_000, days=180, end_date=END)
    planted = json.loads((out / "ground_truth.json").read_text())["channel_order"]
    admin = wh_target.conninfo("admin")
    drop_dbt_relations(admin)
    truncate_raw(admin)
    fill(admin, out)
    env = {"HANDOFF_DBT_DBNAME": wh_target.dbname, "DBT_TARGET_PATH": str(tmp_path / "target"),
           "DBT_LOG_PATH": str(tmp_path / "logs"),
           **dbt_runner.interval_env(None, datetime(2026, 12, 1, tzinfo=UTC))}
    dbt_runner.run(["seed"], quiet=True, env=env)
    dbt_runner.run(["run"], quiet=True, env=env)

    by_dimension = {ch: Fraction(sqls, mqls) for ch, mqls, sqls in _rows(admin, """
        select original_source, count(*), count(sql_at) from marts.dim_contacts
        where mql_at is not null and not mql_inferred group by 1""") if ch in planted}
    assert sorted(by_dimension, key=lambda ch: -by_dimension[ch]) == planted, by_dimension

    by_cohorts = {ch: Fraction(int(sqls), int(mqls)) for ch, sqls, mqls in _rows(admin, """
        select segment_value, sum(sqls_cumulative), sum(mqls) from marts.mql_sql_conversion_cohorts
        where segment_type = 'original_source' and is_complete and months_since_mql = 2
        group by 1""") if ch in planted}
    assert set(by_cohorts) == set(planted)
    # the complete cohort cells hold fewer MQLs (those old enough): neighbours may swap there, the ends may not
    ranked = sorted(by_cohorts, key=lambda ch: -by_cohorts[ch])
    print("complete cohorts, 2 months after the MQL month:", [(ch, str(by_cohorts[ch])) for ch in ranked])
    assert set(ranked[:3]) == set(planted[:3]) and set(ranked[-3:]) == set(planted[-3:]), (ranked, planted)
