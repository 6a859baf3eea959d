"""The one environment variable between ``handoff dashboard`` and its Streamlit page (the BI role's conninfo)."""

CONNINFO_ENV = "HANDOFF_DASHBOARD_CONNINFO"
