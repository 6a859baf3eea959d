"""The conversion dashboard (``handoff dashboard``) and the static report (``handoff report``).

- ``queries``: one SQL query per view, on the marts only, returning rows: what the page, the report and the tests
  read;
- ``figures``: the Plotly figures drawn from those rows (immature cells and periods in progress drawn apart, the
  definition version in every title);
- ``app``: the Streamlit page (``streamlit run``), filters for segment, grain and period;
- ``report``: the same headline views as one self-contained HTML file (Plotly's JavaScript inlined);
- ``serve``: starts the page on 127.0.0.1 as ``handoff_bi_reader``.
"""
