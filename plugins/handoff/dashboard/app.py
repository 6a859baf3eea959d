"""The Streamlit page behind ``handoff dashboard`` (run by ``streamlit run``, never imported by handoff itself).

It reads the marts only, as ``handoff_bi_reader``: the connection string comes from the environment
(``HANDOFF_DASHBOARD_CONNINFO``, set by ``handoff dashboard``), never from the command line or a log. The data is
``handoff.dashboard.queries``, the charts ``handoff.dashboard.figures``, shared with ``handoff report``.
"""

from __future__ import annotations

import os

import psycopg
import streamlit as st

from handoff.dashboard import figures, queries
from handoff.dashboard.app_env import CONNINFO_ENV


def _connect() -> psycopg.Connection:
    conninfo = os.environ.get(CONNINFO_ENV)
    if not conninfo:
        from handoff import warehouse  # noqa: PLC0415

        conninfo = warehouse.target().conninfo("bi_reader")
    return psycopg.connect(conninfo, autocommit=True)


def _version_caption(version: object) -> None:
    st.caption(f"definition version **{version or '–'}** · marts built from config/funnel.yml")


def main() -> None:
    st.set_page_config(page_title="handoff: MQL→SQL conversion", layout="wide")
    with _connect() as conn:
        definition = queries.definition(conn)
        if definition["definition_version"] is None:
            st.error("The marts are empty or not built yet: run `handoff demo` or a daily run first.")
            return
        version = definition["definition_version"]
        segments = queries.segment_values(conn)
        all_periods = queries.periods(conn)

        st.sidebar.header("Filters")
        segment_type = st.sidebar.selectbox("Segment type", list(segments), key="segment_type")
        segment_value = st.sidebar.selectbox("Segment value", segments[segment_type], key="segment_value")
        grain_label = st.sidebar.selectbox(
            "Grain (MQL volume, follow-up)", [f"{definition['cohort_grain']} (definition)", *queries.GRAINS],
            key="grain")
        grain = None if "(definition)" in grain_label else grain_label
        labels = [p.isoformat() for p in all_periods]
        start, end = st.sidebar.select_slider("Periods", options=labels, value=(labels[0], labels[-1]),
                                              key="periods") if len(labels) > 1 else (labels[0], labels[0])
        f = queries.Filters(segment_type=segment_type, segment_value=segment_value, grain=grain,
                            period_from=all_periods[labels.index(start)], period_to=all_periods[labels.index(end)])
        st.sidebar.caption(f"definition version {version}; periods complete until "
                           f"{definition['complete_until']:%Y-%m-%d %H:%M} UTC" if definition["complete_until"]
                           else f"definition version {version}")

        st.title("MQL→SQL conversion")
        _version_caption(version)
        data = queries.all_views(conn, f)
        # conversion by segment compares the values of one segment type: the filter's, or the first one for `all`
        by_type = segment_type if segment_type != "all" else next((t for t in segments if t != "all"), "all")
        by_segment = data["conversion_by_segment"] if by_type == segment_type else queries.conversion_by_segment(
            conn, queries.Filters(segment_type=by_type, period_from=f.period_from, period_to=f.period_to))
        lift = queries.rule_lift(conn)
        backtest = queries.backtest(conn, f)

    segment = "all contacts" if segment_type == "all" else f"{segment_type} = {segment_value}"
    st.subheader(f"Cohorts: {segment}")
    st.plotly_chart(figures.cohort_heatmap(data["cohort_heatmap"], version, definition["cohort_grain"]),
                    key="cohort_heatmap")
    _version_caption(version)

    st.subheader(f"Lagged ratio against the healthy band: {segment}")
    st.plotly_chart(figures.lagged_ratio(data["lagged_ratio"], version),
                    key="lagged_ratio")
    _version_caption(version)

    st.subheader(f"Conversion by {by_type}")
    st.plotly_chart(figures.conversion_by_segment(by_segment, version, by_type),
                    key="conversion_by_segment")
    st.dataframe(by_segment, hide_index=True, key="conversion_by_segment_table")
    _version_caption(version)

    left, right = st.columns(2)
    with left:
        st.subheader("MQL volume against the goal")
        st.plotly_chart(figures.mql_volume(data["mql_volume"], version),
                        key="mql_volume")
        _version_caption(version)
    with right:
        st.subheader("SQL follow-up SLA")
        st.plotly_chart(figures.follow_up_sla(data["follow_up_sla"], version, definition["sla_hours"]),
                        key="follow_up_sla")
        _version_caption(version)

    st.subheader(f"Time in stage: {segment}")
    st.plotly_chart(figures.time_in_stage(data["time_in_stage"], version, segment),
                    key="time_in_stage")
    _version_caption(version)

    st.header("Definition lab")
    st.subheader("Which rules predict sales (all contacts, complete cohorts)")
    st.plotly_chart(figures.rule_lift(lift, version), key="rule_lift")
    st.dataframe(lift, hide_index=True, key="rule_lift_table")
    _version_caption(version)
    st.subheader("The last backtest")
    if backtest:
        st.plotly_chart(figures.backtest(backtest, version), key="backtest")
        st.dataframe(backtest, hide_index=True, key="backtest_table")
    else:
        st.info("No backtest yet: `handoff funnel backtest CANDIDATE.yml` writes marts.funnel_backtest "
                "(docs/funnel.md, \"Changing the definition safely\").")


main()
