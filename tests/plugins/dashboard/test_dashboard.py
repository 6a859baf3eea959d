"""What BI reads: the analyst guide's SQL, ``handoff dashboard`` and ``handoff report`` in a real browser.

One module-scoped dbt build of a small sample (300 contacts × 90 days) on the test database, then:
- every ```sql block of docs/analyst-guide.md runs as the BI role and answers with rows a person can check against
  the test's own computation;
- the dashboard is started on it as a user would (``handoff dashboard --port``), opened in Debian's headless
  Chromium driven by Playwright, and every chart must have rendered with data whose figures equal the marts,
  queried here as the BI role with the test's own SQL. The static report is written by ``handoff report`` and
  opened the same way with every network request refused. Screenshots are saved in ``.local/test-artifacts/``
  (and the pytest tmp folder).
One module, though long: the checks share the one dbt build and the one browser.
"""

from __future__ import annotations

import os
import re
import shutil
import statistics
import subprocess
import sys
import urllib.request
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
from handoff import dbt_runner

from tests.dbt.rawfill import drop_dbt_relations, fill, truncate_raw
from tests.ports import free_port
from tests.waiting import wait_until

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# the interval ends mid-month, so November's cells are immature (is_complete false) and December's not begun
END = date(2026, 11, 15)
INTERVAL_END = datetime(2026, 11, 16, tzinfo=UTC)
GUIDE = Path(__file__).resolve().parents[3] / "docs" / "analyst-guide.md"
REPO = Path(__file__).resolve().parents[3]
ARTIFACTS = REPO / ".local" / "test-artifacts"
# Chromium as the machine's probe starts it: no sandbox as root, none of its background calls home
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
# each chart's title (as the page and report draw it) -> what it must show
CHARTS = ("MQL→SQL conversion by cohort", "Lagged MQL→SQL rate", "MQL→SQL rate by", "MQL volume",
          "New SQLs by follow-up SLA outcome", "Time in stage")

needs_chromium = pytest.mark.skipif(
    not Path(CHROMIUM).exists(),
    reason="Debian's chromium is not installed (make test installs it: apt-get install chromium chromium-driver)")

# every chart on the page: its title, and its traces' x, y, z and marker symbols, as the browser holds them
PLOTS_JS = """() => Array.from(document.querySelectorAll('.js-plotly-plot')).map(el => ({
    title: ((el.layout && el.layout.title && (el.layout.title.text || el.layout.title)) || '')
        .replace(/<[^>]+>/g, ' ').replace(/\\s+/g, ' ').trim(),
    traces: (el.data || []).map(t => ({type: t.type || 'scatter', name: t.name || '', x: t.x || null,
                                       y: t.y || null, z: t.z || null,
                                       symbols: (t.marker && t.marker.symbol) || null})),
    drawn: el.querySelectorAll('.main-svg').length}))"""


@pytest.fixture(scope="module")
def marts(wh_target, tmp_path_factory):
    """A small sample built into the test database's marts (seeds and models; dbt's tests run elsewhere)."""
    sample_mod = pytest.importorskip("handoff.sample")
    tmp = tmp_path_factory.mktemp("dashboard")
    sample_mod.generate(tmp / "sample", seed=7, contacts=300, days=90, end_date=END)
    admin = wh_target.conninfo("admin")
    drop_dbt_relations(admin)
    truncate_raw(admin)
    fill(admin, tmp / "sample")
    env = {"HANDOFF_DBT_DBNAME": wh_target.dbname, "DBT_TARGET_PATH": str(tmp / "target"),
           "DBT_LOG_PATH": str(tmp / "logs"),
           **dbt_runner.interval_env(None, INTERVAL_END)}
    dbt_runner.run(["build", "--resource-type", "seed", "--resource-type", "model"], quiet=True, env=env)
    # The definition lab's marts, given rows a person reads off here (the marts themselves are checked in
    # tests/dbt: 300 contacts have too few complete cohorts for a reported lift, and no backtest ran): three rules'
    # lifts, and a backtest of the current definition against a candidate flagging more MQLs, less precisely.
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute("""
            update marts.funnel_rule_lift as lift
            set is_lift_reported = true, lift = shown.lift, lift_lower = shown.lower, lift_upper = shown.upper,
                contacts_with = 40, outcomes_with = 8, contacts_without = 60, outcomes_without = 6
            from (values ('form_fill', 2.0, 1.2, 3.4), ('pricing_page', 1.1, 0.7, 1.7),
                         ('email_open', 0.8, 0.5, 1.3)) as shown (rule_id, lift, lower, upper)
            where lift.rule_id = shown.rule_id""")
        conn.execute("""
            insert into marts.funnel_backtest (definition, definition_version, cohort_period, mqls, mqls_flagged,
                mqls_added, mqls_dropped, mql_precision, is_complete)
            values ('current', '2026.11.1', '2026-08-01', 12, 11, 0, 0, 0.2727, true),
                   ('candidate', '2026.12.0-lower', '2026-08-01', 19, 18, 7, 0, 0.1667, true),
                   ('current', '2026.11.1', '2026-09-01', 15, 15, 0, 0, 0.1333, false),
                   ('candidate', '2026.12.0-lower', '2026-09-01', 22, 21, 6, 0, 0.0952, false)""")
    return wh_target


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


def _bi(tgt) -> str:
    return tgt.conninfo("bi_reader")


def _q(tgt, query: str, params=()) -> list[tuple]:
    with psycopg.connect(_bi(tgt)) as conn:
        return conn.execute(query, params).fetchall()


def _num(v):
    return None if v is None else float(v) if isinstance(v, Decimal | int | float) else v


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO / "plugins")}


def _shot(page, tmp_path: Path, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=str(path), full_page=True)
    shutil.copy(path, tmp_path / name)
    return path


def _wait_for_charts(page, tmp_path: Path, name: str) -> None:
    """Every chart drawn (Plotly's SVG in place), within a deadline; else a screenshot and the page's text."""
    try:
        page.wait_for_function(
            "Array.from(document.querySelectorAll('.js-plotly-plot'))"
            f".filter(el => el.querySelector('.main-svg') && (el.data || []).length).length >= {len(CHARTS)}",
            timeout=60_000)
    except Exception as exc:
        shot = _shot(page, tmp_path, f"{name}-failed.png")
        raise AssertionError(f"{name}: the charts did not render ({exc}); screenshot {shot}; the page said:\n"
                             f"{page.inner_text('body')[:3000]}") from None


def _by_title(plots: list[dict]) -> dict[str, dict]:
    found = {}
    for want in CHARTS:
        match = [p for p in plots if p["title"].startswith(want)]
        assert match, f"no chart titled {want!r} among {[p['title'][:60] for p in plots]}"
        found[want] = match[0]
    return found


def _assert_shows_the_marts(tgt, plots: list[dict], segment_type_shown: str) -> None:
    """Every chart drawn with data, carrying the definition version, and its figures equal to the marts."""
    (version,) = _q(tgt, "select distinct definition_version from marts.mql_sql_conversion_cohorts")[0]
    charts = _by_title(plots)
    for title, plot in charts.items():
        assert plot["drawn"] > 0, f"{title}: not drawn"
        assert f"definition version {version}" in plot["title"], f"{title}: no definition version"
        assert any(any(v is not None for v in (t["y"] or []) + [c for row in (t["z"] or []) for c in row])
                   for t in plot["traces"]), f"{title}: no data"

    # the cohort heatmap: each cell's rate, immature cells (is_complete false) in the overlay
    cells = _q(tgt, """select cohort_period, months_since_mql, conversion_rate, is_complete
                       from marts.mql_sql_conversion_cohorts where segment_type = 'all'""")
    heat, overlay = charts["MQL→SQL conversion by cohort"]["traces"][:2]
    shown = {(y, x): z for y, row in zip(heat["y"], heat["z"], strict=True)
             for x, z in zip(heat["x"], row, strict=True) if z is not None}
    assert shown == {(c.isoformat(), k): float(rate) for c, k, rate, _ in cells}
    immature = {(y, x) for y, row in zip(overlay["y"], overlay["z"], strict=True)
                for x, z in zip(overlay["x"], row, strict=True) if z is not None}
    assert immature == {(c.isoformat(), k) for c, k, _, complete in cells if not complete} != set()

    # the lagged rate per period (open markers = in progress) and the same-period rate
    health = _q(tgt, """select period, rate, is_complete from marts.mql_sql_rate_health
                        where segment_type = 'all' order by period""")
    lagged, same = charts["Lagged MQL→SQL rate"]["traces"][:2]
    assert lagged["x"] == [p.isoformat() for p, _, _ in health]
    assert lagged["y"] == [_num(r) for _, r, _ in health]
    assert lagged["symbols"] == ["circle" if c else "circle-open" for _, _, c in health]
    same_rates = dict(_q(tgt, """select period, rate from marts.mql_sql_lagged_conversion
                                 where segment_type = 'all' and lag_periods = 0"""))
    assert same["y"] == [_num(same_rates.get(p)) for p, _, _ in health]

    # conversion by segment: complete cells at the headline lag, summed per value
    by_value = {v: float(Decimal(s) / Decimal(m)) for v, s, m in _q(tgt, """
        select segment_value, sum(sqls_cumulative), sum(mqls) from marts.mql_sql_conversion_cohorts
        where segment_type = %s and is_complete
            and months_since_mql = (select max(lag_periods) from marts.mql_sql_rate_health)
        group by 1""", [segment_type_shown])}
    bars = charts["MQL→SQL rate by"]["traces"][0]
    assert dict(zip(bars["x"], bars["y"], strict=True)) == pytest.approx(by_value, abs=5e-5)

    volume = _q(tgt, "select period, mqls, mql_goal from marts.sla_mql_volume order by period")
    mqls, goal = charts["MQL volume"]["traces"][:2]
    assert mqls["x"] == [p.isoformat() for p, _, _ in volume] and mqls["y"] == [n for _, n, _ in volume]
    assert goal["y"] == [g for _, _, g in volume]

    follow = dict(_q(tgt, "select follow_up_outcome, count(*) from marts.sla_sql_follow_up group by 1"))
    shown_follow = {t["name"]: sum(t["y"]) for t in charts["New SQLs by follow-up SLA outcome"]["traces"]}
    assert shown_follow == follow

    stages = _q(tgt, """select stage, median_days_in_stage from marts.stage_durations_by_segment
                        where segment_type = 'all'""")
    medians = charts["Time in stage"]["traces"][0]
    assert dict(zip(medians["x"], medians["y"], strict=True)) == {s: _num(d) for s, d in stages}


def _assert_shows_the_definition_lab(tgt, plots: list[dict]) -> None:
    """The rule lift chart: each reported rule's lift (a rule with a contact on both sides and an opportunity on
    each); the backtest chart: the flagged MQLs and precision of each definition per cohort."""
    lift = {p["title"][:9]: p for p in plots}.get("Rule lift")
    assert lift, [p["title"][:40] for p in plots]
    reported = _q(tgt, "select rule_id, lift from marts.funnel_rule_lift where is_lift_reported order by rule_order")
    assert reported, "no rule reported: the chart would be empty"
    (points,) = lift["traces"]
    assert dict(zip(points["y"], points["x"], strict=True)) == pytest.approx({r: float(v) for r, v in reported})
    shown = next(p for p in plots if p["title"].startswith("Backtest"))
    for definition in ("current", "candidate"):
        rows = _q(tgt, """select cohort_period, mqls_flagged, mql_precision from marts.funnel_backtest
                          where definition = %s order by cohort_period""", [definition])
        bars = next(t for t in shown["traces"] if t["name"].startswith(f"MQLs, {definition}"))
        line = next(t for t in shown["traces"] if t["name"].startswith(f"precision, {definition}"))
        assert bars["x"] == [p.isoformat() for p, _, _ in rows] and bars["y"] == [n for _, n, _ in rows]
        assert line["y"] == [float(v) for _, _, v in rows]


@needs_chromium
def test_dashboard_in_chromium_shows_the_marts(marts, browser, tmp_path):
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "handoff.cli", "dashboard", "--port", str(port),
                             "--dbname", marts.dbname], env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        def healthy() -> bool:
            assert proc.poll() is None, f"handoff dashboard exited: {proc.stdout.read()}"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as resp:
                    return resp.status == 200
            except OSError:
                return False

        wait_until(healthy, "the dashboard to answer its health check", timeout=60)
        page = browser.new_page(viewport={"width": 1400, "height": 3600})
        page.goto(f"http://127.0.0.1:{port}/", wait_until="domcontentloaded")
        _wait_for_charts(page, tmp_path, "dashboard")
        plots = page.evaluate(PLOTS_JS)
        # with the segment filter on `all`, the page compares the values of the first segment type
        first_type = _q(marts, """select min(segment_type) from marts.mql_sql_conversion_cohorts
                                  where segment_type <> 'all'""")[0][0]
        _assert_shows_the_marts(marts, plots, segment_type_shown=first_type)
        _assert_shows_the_definition_lab(marts, plots)
        assert "definition version" in page.inner_text("body")
        shot = _shot(page, tmp_path, "dashboard.png")
        assert shot.stat().st_size > 10_000
        page.close()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@needs_chromium
def test_static_report_opens_offline_in_chromium(marts, browser, tmp_path):
    out = tmp_path / "report.html"
    subprocess.run([sys.executable, "-m", "handoff.cli", "report", "--out", str(out), "--dbname", marts.dbname,
                    "--date", "2026-11-15"], env=_env(), check=True, capture_output=True, text=True)
    context = browser.new_context(viewport={"width": 1300, "height": 5200})
    refused: list[str] = []
    context.route("**/*", lambda route: route.continue_() if route.request.url.startswith("file:")
                  else (refused.append(route.request.url), route.abort()))
    page = context.new_page()
    page.goto(out.as_uri(), wait_until="load")
    _wait_for_charts(page, tmp_path, "report")
    plots = page.evaluate(PLOTS_JS)
    # the report shows conversion by every segment type; the first one is compared here
    first_type = _q(marts, """select min(segment_type) from marts.mql_sql_conversion_cohorts
                              where segment_type <> 'all'""")[0][0]
    first_segment_chart = next(p for p in plots if p["title"].startswith("MQL→SQL rate by "))
    assert first_type in first_segment_chart["title"]
    _assert_shows_the_marts(marts, plots, segment_type_shown=first_type)
    assert refused == [], f"the report asked the network for {refused}"
    # hovering the heatmap's first cell shows its counts and whether it is complete
    first = _q(marts, """select sqls_cumulative, mqls from marts.mql_sql_conversion_cohorts
                         where segment_type = 'all' order by cohort_period, months_since_mql limit 1""")[0]
    box = page.evaluate("""() => { const el = document.querySelector('.js-plotly-plot');
        const r = el.querySelector('.nsewdrag').getBoundingClientRect();
        return {x: r.x, y: r.y, w: r.width, h: r.height, nx: el.data[0].x.length, ny: el.data[0].y.length}; }""")
    page.mouse.move(box["x"] + box["w"] / box["nx"] / 2, box["y"] + box["h"] / box["ny"] / 2)
    page.wait_for_function("document.querySelector('.js-plotly-plot .hoverlayer').textContent.length > 0",
                           timeout=10_000)
    hover = page.eval_on_selector(".js-plotly-plot .hoverlayer", "el => el.textContent")
    assert f"{first[0]} SQLs / {first[1]} MQLs" in hover and "complete" in hover, hover
    assert "2026-11-15" in page.title()
    _shot(page, tmp_path, "report.png")
    context.close()


def _guide_queries() -> dict[str, str]:
    """The guide's ```sql blocks, by the heading above each (a second block under one heading gets ' 2')."""
    out: dict[str, str] = {}
    heading = ""
    for part in re.split(r"(^## [^\n]*$|```sql\n.*?```)", GUIDE.read_text(), flags=re.M | re.S):
        if part.startswith("## "):
            heading = part[3:].strip()
        elif part.startswith("```sql"):
            name = heading if heading not in out else f"{heading} 2"
            out[name] = part[len("```sql\n"):-3].strip().rstrip(";")
    return out


def _guide_rows(tgt, name: str, replace: tuple[str, str] | None = None) -> list[dict]:
    query = _guide_queries()[name]
    if replace:
        query = query.replace(*replace)
    with psycopg.connect(_bi(tgt)) as conn, conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        return cur.execute(query).fetchall()


def test_the_guide_has_the_questions_analysts_ask():
    assert set(_guide_queries()) == {
        "Conversion by cohort, and which cells are immature", "Conversion by channel",
        "Median days from MQL to SQL", "Why a given lead qualified", "MQLs and SQLs not followed up within the SLA",
        "MQLs and SQLs not followed up within the SLA 2", "Time in stage", "Where each SQL's hand-off stands"}
    assert "handoff warehouse url --role bi_reader" in GUIDE.read_text()


def test_guide_cohorts_mark_the_immature_cells(marts):
    got = _guide_rows(marts, "Conversion by cohort, and which cells are immature")
    assert got and {r["maturity"] for r in got} == {"complete", "immature"}
    for r in got:
        assert abs(r["conversion_rate"] - Decimal(r["sqls_cumulative"]) / r["mqls"]) < Decimal("1e-15"), r
        # a cell is immature exactly when its period ends after the run's interval end; none has not begun
        month = r["cohort_period"].month - 1 + r["months_since_mql"]
        start = date(r["cohort_period"].year + month // 12, month % 12 + 1, 1)
        month += 1
        end = date(r["cohort_period"].year + month // 12, month % 12 + 1, 1)
        assert start < INTERVAL_END.date(), r
        assert (r["maturity"] == "complete") == (end <= INTERVAL_END.date()), r


def test_guide_conversion_by_channel_adds_up_to_the_contacts(marts):
    got = _guide_rows(marts, "Conversion by channel")
    channels = {c or "(none)" for (c,) in _q(marts, "select first_touch_channel from marts.dim_contacts")}
    assert got and {r["first_touch_channel"] for r in got} <= channels
    for r in got:
        assert r["conversion_rate"] == round(Decimal(r["sqls"]) / r["mqls"], 3)
    # the channels' MQLs are the complete cohorts' MQLs of every contact (each contact has one first touch)
    (all_mqls,) = _q(marts, """select sum(mqls) from marts.mql_sql_conversion_cohorts where segment_type = 'all'
        and is_complete and months_since_mql = (select max(lag_periods) from marts.mql_sql_rate_health)""")[0]
    assert sum(r["mqls"] for r in got) == all_mqls > 0


def test_guide_median_days_mql_to_sql_is_the_median_of_the_contacts(marts):
    (got,) = _guide_rows(marts, "Median days from MQL to SQL")
    days = [(s - m).total_seconds() / 86400 for m, s in _q(marts, """select mql_at, sql_at from marts.dim_contacts
        where sql_at is not null and not mql_inferred and not sql_inferred""")]
    assert got["sqls"] == len(days) > 0
    assert float(got["median_days_mql_to_sql"]) == pytest.approx(statistics.median(days), abs=0.05)


def test_guide_says_why_a_lead_qualified(marts):
    (contact_id,) = _q(marts, """select contact_id from marts.dim_contacts where mql_evidence_source = 'rules'
                                 order by mql_at, contact_id limit 1""")[0]
    got = _guide_rows(marts, "Why a given lead qualified", ("<contact id>", contact_id))
    mql = [r for r in got if r["to_stage"] == "mql"]
    assert len(mql) == 1 and mql[0]["evidence_source"] == "rules" and mql[0]["rule_ids"]
    (mql_at,) = _q(marts, "select mql_at from marts.dim_contacts where contact_id = %s", [contact_id])[0]
    assert mql[0]["transitioned_at"] == mql_at


def test_guide_follow_ups_tell_late_from_never(marts):
    got = {r["follow_up_outcome"]: r["sqls"] for r in _guide_rows(
        marts, "MQLs and SQLs not followed up within the SLA")}
    expected = {"late": 0, "never": 0}
    for first, due in _q(marts, "select first_follow_up_at, follow_up_due_at from marts.sla_sql_follow_up"):
        if first is not None and first > due:
            expected["late"] += 1
        elif first is None and due < INTERVAL_END:
            expected["never"] += 1
    assert got == {k: v for k, v in expected.items() if v}
    assert got, "the sample has no SQL followed up late or never"


def test_guide_mql_aging_counts_days_to_the_interval_end(marts):
    got = _guide_rows(marts, "MQLs and SQLs not followed up within the SLA 2")
    assert got, "no MQL waiting 7 days untouched in the sample"
    sqls = {c for (c,) in _q(marts, "select contact_id from marts.dim_contacts where sql_at < %s", [INTERVAL_END])}
    for r in got:
        assert r["contact_id"] not in sqls
        assert float(r["days_waiting"]) == pytest.approx((INTERVAL_END - r["mql_at"]) / timedelta(days=1), abs=0.01)
        assert r["days_waiting"] >= 7


def test_guide_time_in_stage_counts_the_stays(marts):
    got = {r["stage"]: r for r in _guide_rows(marts, "Time in stage")}
    stays = _q(marts, """select stage, count(*) filter (where not is_current and not is_inferred),
                                count(*) filter (where is_current and not is_inferred)
                         from marts.fct_stage_durations group by 1""")
    assert {s: (got[s]["contacts_exited"], got[s]["contacts_current"]) for s, _, _ in stays} == \
        {s: (e, c) for s, e, c in stays}
    assert got["mql"]["median_days_in_stage"] is not None


def test_guide_delivery_status_reads_the_push_log_live(marts):
    queued = _q(marts, "select dedupe_key, contact_id, sql_at from marts.sql_handoff_queue order by dedupe_key")
    assert queued, "the sample queued no SQL"
    got = {r["delivery_status"]: r["sqls"] for r in _guide_rows(marts, "Where each SQL's hand-off stands")}
    assert got == {"queued": len(queued)}
    key, contact_id, sql_at = queued[0]
    with psycopg.connect(marts.conninfo("admin"), autocommit=True) as conn:
        conn.execute("""insert into ops.crm_push_log (run_id, contact_id, sql_at, dedupe_key, action, attempt, status,
                        crm_object_id) values ('test', %s, %s, %s, 'create_task', 1, 'succeeded', 'task-1')""",
                     [contact_id, sql_at, key])
        try:
            got = {r["delivery_status"]: r["sqls"] for r in _guide_rows(marts, "Where each SQL's hand-off stands")}
            assert got == {"queued": len(queued) - 1, "delivered": 1}  # no dbt build in between: the view is live
            assert _q(marts, "select crm_task_id from marts.sql_handoff_delivery where dedupe_key = %s",
                      [key]) == [("task-1",)]
        finally:
            conn.execute("delete from ops.crm_push_log where run_id = 'test'")
