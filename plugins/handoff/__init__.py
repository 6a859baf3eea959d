"""handoff: the marketing→sales lead hand-off as a warehouse job set (Airflow + dbt + Postgres)."""

__version__ = "0.1.0"
