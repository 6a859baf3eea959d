"""``handoff report --out FILE.html``: the dashboard's headline views as one self-contained HTML file.

Plotly's JavaScript is inlined once (no network needed to open the file: it can be mailed or archived); the data
comes from ``handoff.dashboard.queries`` as ``handoff_bi_reader``, for all contacts, every period the marts hold,
and conversion by every segment type.
"""

from __future__ import annotations

import html
from datetime import UTC, date, datetime
from pathlib import Path

import psycopg

from handoff.dashboard import figures, queries

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5rem auto; max-width: 1200px; color: #222; }
h1 { margin-bottom: 0.2rem; } .meta { color: #555; margin-top: 0; }
section { margin: 1.5rem 0; border-top: 1px solid #ddd; padding-top: 0.5rem; }
table { border-collapse: collapse; font-size: 0.9rem; } td, th { padding: 2px 8px; border-bottom: 1px solid #eee; }
th { text-align: left; } td.n { text-align: right; }
"""


def _table(rows: list[dict], columns: list[str]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td class='n'>{html.escape('' if r[c] is None else str(r[c]))}</td>" for c in columns)
        + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render(conn: psycopg.Connection, day: date | None = None) -> str:
    """The report's HTML for the marts as they are (``day``: the run's day it is labelled with, if any)."""
    definition = queries.definition(conn)
    version = definition["definition_version"]
    if version is None:
        raise ValueError("the marts are empty or not built yet: run `handoff demo` or a daily run first")
    f = queries.Filters()
    data = queries.all_views(conn, f)
    segment_types = [t for t in queries.segment_values(conn) if t != "all"]
    figs = [
        figures.cohort_heatmap(data["cohort_heatmap"], version, definition["cohort_grain"]),
        figures.lagged_ratio(data["lagged_ratio"], version),
    ]
    tables: dict[str, str] = {}
    for segment_type in segment_types:
        by_segment = queries.conversion_by_segment(conn, queries.Filters(segment_type=segment_type))
        figs.append(figures.conversion_by_segment(by_segment, version, segment_type))
        tables[segment_type] = _table(by_segment, ["segment_value", "mqls", "sqls", "conversion_rate", "cohorts"])
    figs += [
        figures.mql_volume(data["mql_volume"], version),
        figures.follow_up_sla(data["follow_up_sla"], version, definition["sla_hours"]),
        figures.time_in_stage(data["time_in_stage"], version, "all contacts"),
    ]
    sections = []
    for i, fig in enumerate(figs):
        # the first figure carries plotly.js inline; the others reuse it
        div = fig.to_html(full_html=False, include_plotlyjs=(i == 0), config={"displaylogo": False},
                          div_id=f"figure-{i}")
        extra = ""
        if 2 <= i < 2 + len(segment_types):
            extra = tables[segment_types[i - 2]]
        sections.append(f"<section>{div}{extra}<p class='meta'>definition version {html.escape(str(version))}"
                        f"</p></section>")
    label = f"for {day.isoformat()}" if day else ""
    made = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    complete = definition["complete_until"]
    meta = (f"definition version <b>{html.escape(str(version))}</b> · periods complete until "
            f"{complete:%Y-%m-%d} · written {made} from the marts (handoff report)" if complete else
            f"definition version <b>{html.escape(str(version))}</b> · written {made}")
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>handoff: MQL→SQL conversion "
            f"{label}</title><style>{_STYLE}</style></head><body><h1>MQL→SQL conversion {label}</h1>"
            f"<p class='meta'>{meta}. A * or grey marks a cell or period that has not ended: its figures are "
            f"so far, not final.</p>{''.join(sections)}</body></html>")


def write(conn: psycopg.Connection, out: Path, day: date | None = None) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(render(conn, day), encoding="utf-8")
    tmp.replace(out)
    return out
