"""The repository itself: a full lock, a docker-compose that would start, no secrets committed."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]


def _lock(name: str) -> list[str]:
    lines = [ln.strip() for ln in (REPO / name).read_text().splitlines()]
    return [ln for ln in lines if ln and not ln.startswith("#") and ln != "-r requirements.txt"]


DEV_ONLY = ("pytest", "pytest-xdist", "hypothesis", "ruff", "sqlfluff", "pre-commit", "hubspot-api-client", "dlt")


def test_requirements_is_a_full_exact_lock():
    """requirements.txt locks the runtime, requirements-dev.txt (-r requirements.txt) adds the dev tools."""
    runtime = _lock("requirements.txt")
    reqs = runtime + _lock("requirements-dev.txt")
    assert len(reqs) > 100  # airflow + dbt + cosmos pull in well over a hundred packages
    exact = re.compile(r"[A-Za-z0-9_.\-]+(\[[a-z0-9,_\-]+\])?==[A-Za-z0-9_.+\-]+")
    for req in reqs:
        assert exact.fullmatch(req), f"not pinned exactly: {req}"
    pinned = {r.split("==")[0].lower().replace("_", "-"): r.split("==")[1] for r in reqs}
    assert len(pinned) == len(reqs), "a package is pinned in both locks"
    runtime_names = {r.split("==")[0].lower().replace("_", "-") for r in runtime}
    assert not runtime_names & set(DEV_ONLY), "a test, benchmark or lint tool is in the runtime lock"
    assert pinned["apache-airflow"] == "3.3.2"
    assert pinned["dbt-core"] == "1.11.16"
    assert pinned["dbt-postgres"] == "1.11.0"
    assert pinned["astronomer-cosmos"] == "1.15.1"
    for needed in ("psycopg", "psycopg-binary", "orjson", "httpx", "pyyaml", "pgserver", "pytest", "hypothesis",
                   "hubspot-api-client", "setuptools"):
        assert needed in pinned, f"{needed} missing from the lock"


def test_lock_is_consistent_with_the_installed_environment():
    """pip check: nothing installed from the lock has a broken or missing dependency."""
    res = subprocess.run([str(REPO / ".venv" / "bin" / "python"), "-m", "pip", "check"], capture_output=True,
                         text=True)
    assert res.returncode == 0, res.stdout + res.stderr


def test_docker_compose_structure():
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    services = compose["services"]
    for name in ("airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer",
                 "airflow-db", "warehouse", "crm-sandbox", "airflow-init"):
        assert name in services, f"service {name} missing"
    commands = {n: services[n].get("command") for n in services}
    assert commands["airflow-apiserver"] == "api-server"
    assert commands["airflow-scheduler"] == ["python", "-m", "handoff.airflow_main", "scheduler"]  # see below
    assert commands["airflow-dag-processor"] == "dag-processor"
    assert commands["airflow-triggerer"] == "triggerer"
    # every image pinned to an exact tag (never latest / untagged), Airflow on 3.3.2
    for name, svc in services.items():
        image = svc["image"]
        assert ":" in image and not image.endswith(":latest"), f"{name} image not pinned: {image}"
    dockerfile = (REPO / "docker" / "airflow.Dockerfile").read_text()
    assert "FROM apache/airflow:3.3.2-python3.11" in dockerfile
    # healthchecks on every long-running service
    for name, svc in services.items():
        if name != "airflow-init":
            assert "healthcheck" in svc, f"{name} has no healthcheck"
    # the project's code is mounted where Airflow looks for it
    mounts = services["airflow-scheduler"]["volumes"]
    for folder in ("./dags:/opt/airflow/dags", "./plugins:/opt/airflow/plugins",
                   "./dbt_project:/opt/airflow/dbt_project"):
        assert folder in mounts
    env = services["airflow-scheduler"]["environment"]
    assert env["AIRFLOW__CORE__LOAD_EXAMPLES"] == "False"
    for conn in ("LOADER", "TRANSFORMER", "PUSHER"):
        assert f"AIRFLOW_CONN_HANDOFF_WAREHOUSE_{conn}" in env
    assert "AIRFLOW_CONN_HANDOFF_CRM" in env
    # the profile "celery": the layout `handoff airflow up --executor celery` runs (Redis, two workers), chosen by
    # AIRFLOW_EXECUTOR; the broker's password from the environment, not on a command line
    assert env["AIRFLOW__CORE__EXECUTOR"] == "${AIRFLOW_EXECUTOR:-LocalExecutor}"
    assert env["AIRFLOW__CELERY__BROKER_URL"] == "redis://:${REDIS_PASSWORD:-change-me}@redis:6379/0"
    assert env["AIRFLOW__CELERY__RESULT_BACKEND"].startswith("db+postgresql://airflow:")
    assert {n for n, svc in services.items() if svc.get("profiles")} == {"redis", "airflow-worker", "flower"}
    assert services["redis"]["profiles"] == services["airflow-worker"]["profiles"] == ["celery"]
    # the processes that fork task processes start through handoff.airflow_main (dbt imported once, before forking)
    assert services["airflow-worker"]["command"] == ["python", "-m", "handoff.airflow_main", "celery", "worker"]
    assert services["airflow-worker"]["deploy"]["replicas"] == 2
    # Redis's password reaches it as config on stdin, from the shell's variable: compose's ${REDIS_PASSWORD} in the
    # command would put the value itself on redis-server's command line
    redis = " ".join(services["redis"]["command"])
    assert '"$$REDIS_PASSWORD" | exec redis-server -' in redis and "${REDIS_PASSWORD" not in redis
    for name in ("warehouse", "airflow-db"):
        assert services[name]["volumes"], f"{name} keeps no data volume"
    assert set(compose["volumes"]) >= {"warehouse", "airflow-db"}


SECRET_PATTERNS = [
    re.compile(r"pat-(na|eu)1-[0-9a-f]{8}-[0-9a-f]{4}"),  # HubSpot private-app tokens
    re.compile(r"-----BEGIN (RSA |EC )?PRIVATE KEY-----"),
    re.compile(r"AKIA[0-9A-Z]{16}"),
    re.compile(r"postgres(ql)?://[^:\s/]+:(?!\*\*\*|\$\{|password@|y@|wrong@|x@|pw@)[^@\s]{12,}@"),
]


def test_no_secrets_in_the_repository():
    files = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    for rel in files:
        path = REPO / rel
        if not path.is_file() or path.suffix in {".gz", ".png"}:
            continue
        text = path.read_text(errors="ignore")
        for pattern in SECRET_PATTERNS:
            assert not pattern.search(text), f"{rel} looks like it holds a secret ({pattern.pattern})"
    assert ".local/" in (REPO / ".gitignore").read_text()


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def test_every_dbt_column_description_says_more_than_the_column_name():
    """dbt docs are what a BI user reads: a description that only rewords the column's name ("sql inferred.") tells
    them nothing. Docs blocks (`{{ doc('x') }}`) are resolved from the project's .md files first."""
    models = REPO / "dbt_project" / "models"
    blocks = {m.group(1): m.group(2) for md in models.rglob("*.md")
              for m in re.finditer(r"{%\s*docs\s+(\w+)\s*%}(.*?){%\s*enddocs\s*%}", md.read_text(), re.S)}
    thin, seen = [], 0
    for yml in sorted(models.rglob("_*.yml")):
        for model in (yaml.safe_load(yml.read_text()) or {}).get("models") or []:
            for column in model.get("columns") or []:
                seen += 1
                text = re.sub(r"{{\s*doc\(\s*['\"](\w+)['\"]\s*\)\s*}}", lambda m: blocks.get(m.group(1), ""),
                              str(column.get("description") or ""))
                if set(_words(text)) <= set(_words(column["name"])) | {"the", "a", "of", "is", "at"}:
                    thin.append(f"{yml.relative_to(REPO)}: {model['name']}.{column['name']}: {text!r}")
    assert seen > 400  # every layer's columns were read
    assert thin == []


# A home, a workspace or a mount point of one machine; /opt/airflow and /usr/lib/... (the container's and the
# system's own paths) are not machine-specific.
MACHINE_PATH = re.compile(r"(?<![\w.~-])/(?:work|home|Users|root|mnt|media)/[\w.-]")


def test_no_machine_specific_path_in_any_tracked_file():
    """Every script finds the checkout from its own location; no file names where one machine keeps it."""
    files = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    found = []
    for rel in files:
        path = REPO / rel
        if not path.is_file() or path.suffix in {".gz", ".png"}:
            continue
        for n, line in enumerate(path.read_text(errors="ignore").splitlines(), 1):
            if MACHINE_PATH.search(line):
                found.append(f"{rel}:{n}: {line.strip()[:100]}")
    assert found == []
