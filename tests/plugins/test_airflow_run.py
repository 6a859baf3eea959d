"""What `handoff run` says about a finished Airflow run (airflow_run.check_outcome), without running Airflow."""

from __future__ import annotations

from datetime import date

import pytest
from handoff.airflow_run import RunFailed, check_outcome

DAY = date(2026, 11, 24)


def test_a_run_whose_every_task_failed_names_them_and_the_log_tail(tmp_path):
    log = tmp_path / "run.log"
    log.write_text("connection to the warehouse refused\n")
    states = {"extract_crm": "failed", "load_analytics": "failed", "dbt_staging": "upstream_failed"}
    with pytest.raises(RunFailed) as exc:
        check_outcome(DAY, "failed", states, log)
    text = str(exc.value)
    assert "ended failed; not successful: ['dbt_staging', 'extract_crm', 'load_analytics']" in text
    assert "connection to the warehouse refused" in text
    assert "ran no task" not in text


@pytest.mark.parametrize("states", [{}, {"extract_crm": "None", "load_analytics": "None"}])
def test_a_run_that_started_no_task_is_an_error_even_when_airflow_calls_it_a_success(states):
    with pytest.raises(RunFailed, match="run for 2026-11-24 ran no task"):
        check_outcome(DAY, "success", states)


def test_a_successful_run_with_a_skipped_task_passes():
    check_outcome(DAY, "success", {"extract_crm": "success", "push": "skipped"})
