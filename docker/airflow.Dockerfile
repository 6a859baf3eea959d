# The official Airflow image plus handoff's locked dependencies (dbt, Cosmos, psycopg, ...).
FROM apache/airflow:3.3.2-python3.11
COPY requirements.txt /tmp/requirements-handoff.txt
RUN pip install --no-cache-dir -r /tmp/requirements-handoff.txt
ENV PYTHONPATH=/opt/airflow/plugins
