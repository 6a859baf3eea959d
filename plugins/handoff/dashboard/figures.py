"""Plotly figures for the dashboard's views, built from the rows of ``handoff.dashboard.queries``.

The Streamlit page and the static report draw the same figures. Each figure's title ends with the definition
version its marts were built with; a period or cell that has not ended (``is_complete`` false) is drawn apart:
hatched / faded cells in the heatmap, open markers and a dotted line in the charts, and "in progress" in the hover.
"""

from __future__ import annotations

from collections import defaultdict

import plotly.graph_objects as go

COMPLETE_COLOR = "#1f77b4"
IN_PROGRESS_COLOR = "#9aa5b1"
OUTCOME_COLORS = {"met": "#2ca02c", "late": "#ff7f0e", "never": "#d62728", "pending": "#9aa5b1"}


def _title(text: str, version: object) -> dict:
    return {"text": f"{text}<br><sup>definition version {version or '–'}</sup>"}


def _layout(fig: go.Figure, title: str, version: object, **kwargs) -> go.Figure:
    fig.update_layout(title=_title(title, version), margin={"t": 70, "l": 60, "r": 20, "b": 50},
                      legend={"orientation": "h", "y": -0.2}, template="plotly_white", **kwargs)
    return fig


def _pct(value) -> str:
    return "–" if value is None else f"{float(value):.1%}"


def cohort_heatmap(rows: list[dict], version: object, grain: str = "month") -> go.Figure:
    """Cohort × periods since MQL, colour = cumulative conversion rate. Immature cells (period not ended) carry the
    same colour scale but are overlaid by a grey hatch and say "in progress" in the hover."""
    cohorts = sorted({r["cohort_period"] for r in rows})
    ks = sorted({r["months_since_mql"] for r in rows})
    cell = {(r["cohort_period"], r["months_since_mql"]): r for r in rows}
    y = [c.isoformat() for c in cohorts]
    z, text, hover, immature = [], [], [], []
    for c in cohorts:
        z_row, t_row, h_row, i_row = [], [], [], []
        for k in ks:
            r = cell.get((c, k))
            if r is None:
                z_row.append(None)
                t_row.append("")
                h_row.append("")
                i_row.append(None)
                continue
            rate = None if r["conversion_rate"] is None else float(r["conversion_rate"])
            z_row.append(rate)
            t_row.append(_pct(rate) + ("" if r["is_complete"] else "*"))
            h_row.append(f"cohort {c.isoformat()} + {k} {grain}(s)<br>{r['sqls_cumulative']} SQLs / {r['mqls']} MQLs"
                         f" = {_pct(rate)}<br>" + ("complete" if r["is_complete"] else
                                                   "in progress: immature, can still grow"))
            i_row.append(None if r["is_complete"] else 1)
        z.append(z_row)
        text.append(t_row)
        hover.append(h_row)
        immature.append(i_row)
    fig = go.Figure()
    fig.add_trace(go.Heatmap(z=z, x=ks, y=y, text=text, texttemplate="%{text}", customdata=hover,
                             hovertemplate="%{customdata}<extra></extra>", colorscale="Blues", zmin=0,
                             colorbar={"title": "SQL rate", "tickformat": ".0%"}, name="conversion rate"))
    # immature cells: a translucent hatch on top, so they read differently at a glance (and in a grey print)
    fig.add_trace(go.Heatmap(z=immature, x=ks, y=y, colorscale=[[0, "rgba(200,200,200,0.55)"],
                                                                 [1, "rgba(200,200,200,0.55)"]],
                             showscale=False, hoverinfo="skip", name="immature (in progress)",
                             xgap=0, ygap=0))
    fig.data[1].update(zmin=0, zmax=1)
    return _layout(fig, "MQL→SQL conversion by cohort (cumulative; * and grey = immature, in progress)", version,
                   xaxis={"title": f"{grain}s since MQL", "dtick": 1}, yaxis={"title": "MQL cohort",
                                                                               "autorange": "reversed",
                                                                               "type": "category"},
                   height=max(320, 40 * len(cohorts) + 140))


def lagged_ratio(rows: list[dict], version: object) -> go.Figure:
    """The headline lagged rate per period against the healthy band (shaded), open markers for periods still in
    progress, and the same-period rate beside it (dashed) so the lag's effect shows."""
    fig = go.Figure()
    if rows:
        lo, hi = float(rows[0]["healthy_min_rate"]), float(rows[0]["healthy_max_rate"])
        fig.add_hrect(y0=lo, y1=hi, fillcolor="#2ca02c", opacity=0.12, line_width=0,
                      annotation_text=f"healthy band {lo:.0%}–{hi:.0%}", annotation_position="top left")
    x = [r["period"].isoformat() for r in rows]
    lag = rows[0]["lag_periods"] if rows else "?"
    fig.add_trace(go.Scatter(
        x=x, y=[None if r["rate"] is None else float(r["rate"]) for r in rows], mode="lines+markers",
        name=f"lagged rate (SQLs / MQLs {lag} periods before)", line={"color": COMPLETE_COLOR},
        marker={"size": 10, "symbol": ["circle" if r["is_complete"] else "circle-open" for r in rows]},
        customdata=[[r["sqls"], r["mqls"], r["mql_period"].isoformat(), r["health_status"]] for r in rows],
        hovertemplate="%{x}: %{customdata[0]} SQLs / %{customdata[1]} MQLs of %{customdata[2]} = %{y:.1%}"
                      "<br>%{customdata[3]}<extra></extra>"))
    fig.add_trace(go.Scatter(
        x=x, y=[None if r["same_period_rate"] is None else float(r["same_period_rate"]) for r in rows],
        mode="lines+markers", name="same-period rate (SQLs / MQLs of the period)",
        line={"color": "#ff7f0e", "dash": "dash"},
        marker={"size": 8, "symbol": ["square" if r["is_complete"] else "square-open" for r in rows]},
        customdata=[[r["same_period_sqls"], r["same_period_mqls"],
                     "complete" if r["is_complete"] else "in progress"] for r in rows],
        hovertemplate="%{x}: %{customdata[0]} SQLs / %{customdata[1]} MQLs = %{y:.1%} (%{customdata[2]})"
                      "<extra></extra>"))
    return _layout(fig, "Lagged MQL→SQL rate against the healthy band (open markers = period in progress)",
                   version, yaxis={"tickformat": ".0%", "title": "rate", "rangemode": "tozero"},
                   xaxis={"title": "period", "type": "category"}, height=420)


def conversion_by_segment(rows: list[dict], version: object, segment_type: str) -> go.Figure:
    within = rows[0]["within_periods"] if rows else "?"
    fig = go.Figure(go.Bar(
        x=[r["segment_value"] for r in rows],
        y=[None if r["conversion_rate"] is None else float(r["conversion_rate"]) for r in rows],
        text=[f"{_pct(r['conversion_rate'])} ({r['sqls']}/{r['mqls']})" for r in rows], textposition="outside",
        customdata=[[r["sqls"], r["mqls"], r["cohorts"]] for r in rows], marker={"color": COMPLETE_COLOR},
        hovertemplate="%{x}: %{customdata[0]} SQLs / %{customdata[1]} MQLs = %{y:.1%} over %{customdata[2]} "
                      "complete cohorts<extra></extra>", name="conversion"))
    return _layout(fig, f"MQL→SQL rate by {segment_type} within {within} periods of MQL (complete cohorts)",
                   version, yaxis={"tickformat": ".0%", "title": "SQL rate", "rangemode": "tozero"},
                   xaxis={"title": segment_type, "type": "category"}, height=420)


def mql_volume(rows: list[dict], version: object) -> go.Figure:
    x = [r["period"].isoformat() for r in rows]
    fig = go.Figure()
    fig.add_trace(go.Bar(
        x=x, y=[r["mqls"] for r in rows], name="MQLs",
        marker={"color": [COMPLETE_COLOR if r["is_complete"] else IN_PROGRESS_COLOR for r in rows]},
        customdata=[["met" if r["is_goal_met"] else "missed" if r["is_goal_met"] is False else "in progress"]
                    for r in rows],
        hovertemplate="%{x}: %{y} MQLs (%{customdata[0]})<extra></extra>"))
    fig.add_trace(go.Scatter(x=x, y=[r["mql_goal"] for r in rows], mode="lines+markers", name="goal",
                             line={"color": "#d62728", "dash": "dot"},
                             hovertemplate="%{x}: goal %{y} MQLs<extra></extra>"))
    return _layout(fig, "MQL volume against the goal (grey = period in progress)", version,
                   yaxis={"title": "MQLs"}, xaxis={"title": "period", "type": "category"}, height=400)


def follow_up_sla(rows: list[dict], version: object, sla_hours: object) -> go.Figure:
    by_outcome: dict[str, dict[str, int]] = defaultdict(dict)
    periods = sorted({r["period"] for r in rows})
    for r in rows:
        by_outcome[r["follow_up_outcome"]][r["period"].isoformat()] = r["sqls"]
    x = [p.isoformat() for p in periods]
    fig = go.Figure()
    order = list(OUTCOME_COLORS)
    for outcome in sorted(by_outcome, key=lambda o: order.index(o) if o in order else len(order)):
        fig.add_trace(go.Bar(x=x, y=[by_outcome[outcome].get(p, 0) for p in x], name=outcome,
                             marker={"color": OUTCOME_COLORS.get(outcome, "#7f7f7f")},
                             hovertemplate=f"%{{x}}: %{{y}} SQLs, follow-up {outcome}<extra></extra>"))
    fig.update_layout(barmode="stack")
    return _layout(fig, f"New SQLs by follow-up SLA outcome (first call or meeting within {sla_hours} h; never = "
                   "not followed up)", version,
                   yaxis={"title": "SQLs"}, xaxis={"title": "period of sql_at", "type": "category"}, height=400)


def time_in_stage(rows: list[dict], version: object, segment: str) -> go.Figure:
    x = [r["stage"] for r in rows]
    num = [None if r["median_days_in_stage"] is None else float(r["median_days_in_stage"]) for r in rows]
    fig = go.Figure()
    fig.add_trace(go.Bar(x=x, y=num, name="median days (left the stage)", marker={"color": COMPLETE_COLOR},
                         customdata=[[r["contacts_exited"], r["p75_days_in_stage"]] for r in rows],
                         hovertemplate="%{x}: median %{y} days over %{customdata[0]} contacts that left; p75 "
                                       "%{customdata[1]}<extra></extra>"))
    fig.add_trace(go.Bar(x=x, y=[None if r["median_days_current"] is None else float(r["median_days_current"])
                                 for r in rows], name="median days so far (still in the stage)",
                         marker={"color": IN_PROGRESS_COLOR},
                         customdata=[[r["contacts_current"]] for r in rows],
                         hovertemplate="%{x}: %{customdata[0]} contacts still in it, median %{y} days so far"
                                       "<extra></extra>"))
    fig.update_layout(barmode="group")
    return _layout(fig, f"Time in stage, {segment}", version, yaxis={"title": "days"},
                   xaxis={"title": "stage", "type": "category"}, height=400)


def rule_lift(rows: list[dict], version: object) -> go.Figure:
    """Lift per rule with its 95% interval, the line at 1 (no difference); rules below the minimum count are not
    drawn (their counts are in the table beside it)."""
    shown = [r for r in rows if r["is_lift_reported"]]
    lifts = [float(r["lift"]) for r in shown]
    fig = go.Figure(go.Scatter(
        x=lifts, y=[r["rule_id"] for r in shown], mode="markers", name="lift",
        marker={"size": 10, "color": ["#2ca02c" if float(r["lift_lower"]) > 1 else "#d62728"
                                      if float(r["lift_upper"]) < 1 else "#7f7f7f" for r in shown]},
        error_x={"type": "data", "symmetric": False,
                 "array": [float(r["lift_upper"]) - lift for r, lift in zip(shown, lifts, strict=True)],
                 "arrayminus": [lift - float(r["lift_lower"]) for r, lift in zip(shown, lifts, strict=True)]},
        customdata=[[r["outcomes_with"], r["contacts_with"], r["outcomes_without"], r["contacts_without"]]
                    for r in shown],
        hovertemplate="%{y}: lift %{x:.2f}<br>with: %{customdata[0]} / %{customdata[1]} reached an opportunity"
                      "<br>without: %{customdata[2]} / %{customdata[3]}<extra></extra>"))
    fig.add_vline(x=1, line_dash="dot", line_color="#555")
    return _layout(fig, "Rule lift: opportunity rate with the rule ÷ without (95% interval; green predicts sales, "
                   "grey only adds volume)", version, xaxis={"title": "lift", "type": "log"},
                   yaxis={"title": "rule", "type": "category", "autorange": "reversed"},
                   height=max(320, 28 * len(shown) + 140))


def backtest(rows: list[dict], version: object) -> go.Figure:
    """The last backtest: MQLs flagged per cohort under the current and the candidate definition (bars) and their
    precision (lines, right axis); open markers for cohorts whose outcome window is still open."""
    fig = go.Figure()
    colors = {"current": COMPLETE_COLOR, "candidate": "#ff7f0e"}
    for definition in ("current", "candidate"):
        mine = [r for r in rows if r["definition"] == definition]
        if not mine:
            continue
        label = f"{definition} ({mine[0]['definition_version']})"
        x = [r["cohort_period"].isoformat() for r in mine]
        fig.add_trace(go.Bar(x=x, y=[r["mqls_flagged"] for r in mine], name=f"MQLs, {label}",
                             marker={"color": colors[definition]},
                             hovertemplate="%{x}: %{y} MQLs flagged<extra></extra>"))
        fig.add_trace(go.Scatter(
            x=x, y=[None if r["mql_precision"] is None else float(r["mql_precision"]) for r in mine],
            mode="lines+markers", yaxis="y2", name=f"precision, {label}", line={"color": colors[definition]},
            marker={"symbol": ["circle" if r["is_complete"] else "circle-open" for r in mine], "size": 9},
            hovertemplate="%{x}: precision %{y:.1%}<extra></extra>"))
    fig.update_layout(barmode="group")
    return _layout(fig, "Backtest: MQLs and precision, current against candidate (open markers = outcome window "
                   "still open)", version, yaxis={"title": "MQLs flagged"},
                   yaxis2={"title": "precision", "overlaying": "y", "side": "right", "tickformat": ".0%",
                           "rangemode": "tozero"},
                   xaxis={"title": "cohort", "type": "category"}, height=420)
