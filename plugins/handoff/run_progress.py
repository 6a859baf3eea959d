"""What ``handoff run`` and ``make demo`` print while the DAG runs: each task as it starts and as it ends (state,
seconds, and rows where the task reports them), with a running count of finished tasks.

It reads Airflow's own record of the run (task instances and their XCom results in the metadata database), the
same as the grid view in Airflow's UI, on a background thread that polls every half second. So it works the same
whether the tasks run in this process (``airflow dags test``) or in LocalExecutor workers (``--parallel``), and it
never touches a task. A failed task is named with the first lines of its error and where its full log is.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from handoff import settings

POLL_SECONDS = 0.5
ERROR_LINES = 6
# XCom keys a task returns that count rows, in the order they are reported
ROW_KEYS = ("rows_loaded", "rows", "sqls_pushed", "pushed", "contacts", "events")
_ERROR = re.compile(r"(Traceback|Error|Exception|FAIL|failed)", re.IGNORECASE)


@dataclass
class TaskSeen:
    task_id: str
    state: str | None
    started: datetime | None
    ended: datetime | None
    duration: float | None
    try_number: int
    log_offset: int = 0

    def touched_since(self, since: datetime) -> bool:
        """Started or ended at or after ``since``: a task of this run, not of an earlier run of the same day."""
        return any(moment is not None and moment >= since for moment in (self.started, self.ended))


class RunProgress:
    """Watches one DAG run (by dag id and logical date) and prints what changes, through ``say``."""

    def __init__(self, dag_id: str, logical_date: datetime, total_tasks: int, say: Callable[[str], None],
                 run_log: Path | None = None) -> None:
        self.dag_id = dag_id
        self.logical_date = logical_date
        self.total_tasks = total_tasks
        self.say = say
        self.run_log = run_log
        self.since = datetime.now(UTC)
        self.run_id: str | None = None
        self.seen: dict[str, TaskSeen] = {}
        self.finished: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="handoff-run-progress", daemon=True)

    def __enter__(self) -> RunProgress:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self.poll()  # the states the run ended with, once more

    def _watch(self) -> None:
        while not self._stop.wait(POLL_SECONDS):
            self.poll()

    def poll(self) -> None:
        """Print every task that started or ended since the last poll."""
        try:
            tasks = self._read_tasks()
        except Exception:  # noqa: BLE001 - the metadata DB busy (SQLite locked) or not there yet: next poll
            return
        for task in tasks:
            if not task.touched_since(self.since):
                continue  # not started yet in this run (or a rerun of the day still shows the last run's state)
            before = self.seen.get(task.task_id)
            if task.state in {"running", "queued"} and (before is None or before.state not in {"running", "queued"}):
                task.log_offset = self._run_log_size()
                self.seen[task.task_id] = task
                if task.state == "running":
                    self.say(f"{self._count()} started {task.task_id}")
                continue
            if task.state in {"success", "failed", "upstream_failed", "skipped"} and task.task_id not in self.finished:
                self.finished.add(task.task_id)
                if before is not None:
                    task.log_offset = before.log_offset
                self.seen[task.task_id] = task
                self.say(self._ended(task))
            elif task.task_id not in self.seen:
                self.seen[task.task_id] = task

    def _count(self) -> str:
        return f"[{len(self.finished):>{len(str(self.total_tasks))}}/{self.total_tasks} tasks]"

    def _ended(self, task: TaskSeen) -> str:
        seconds = f" in {task.duration:.1f} s" if task.duration is not None else ""
        line = f"{self._count()} {task.task_id}: {task.state}{seconds}"
        if task.state == "success":
            rows = self._rows(task.task_id)
            return line + (f" ({rows})" if rows else "")
        if task.state == "failed":
            return line + "\n" + self._error(task)
        return line

    def _read_tasks(self) -> list[TaskSeen]:
        from airflow.models.dagrun import DagRun  # noqa: PLC0415
        from airflow.models.taskinstance import TaskInstance  # noqa: PLC0415
        from airflow.settings import Session  # noqa: PLC0415

        with Session() as session:
            rows = (session.query(TaskInstance)
                    .join(DagRun, (DagRun.dag_id == TaskInstance.dag_id) & (DagRun.run_id == TaskInstance.run_id))
                    .filter(TaskInstance.dag_id == self.dag_id, DagRun.logical_date == self.logical_date)
                    .all())
            self.run_id = rows[0].run_id if rows else None
            return [TaskSeen(ti.task_id, str(ti.state) if ti.state else None, ti.start_date, ti.end_date,
                             ti.duration, ti.try_number or 1) for ti in rows]

    def _rows(self, task_id: str) -> str:
        """'1,234 rows_loaded' from the task's XCom result, when it returns a count of rows."""
        from airflow.models.xcom import XComModel  # noqa: PLC0415
        from airflow.settings import Session  # noqa: PLC0415

        try:
            with Session() as session:
                row = (session.query(XComModel.value)
                       .filter(XComModel.dag_id == self.dag_id, XComModel.run_id == self.run_id,
                               XComModel.task_id == task_id, XComModel.key == "return_value")
                       .first())
            value = json.loads(row[0]) if row and isinstance(row[0], str | bytes) else (row[0] if row else None)
        except Exception:  # noqa: BLE001 - a count is a nicety; the state line is printed anyway
            return ""
        if not isinstance(value, dict):
            return ""
        counts = [f"{value[key]:,} {key}" for key in ROW_KEYS if isinstance(value.get(key), int)]
        return ", ".join(counts[:2])

    def _run_log_size(self) -> int:
        try:
            return self.run_log.stat().st_size if self.run_log else 0
        except FileNotFoundError:
            return 0

    def task_log(self, task: TaskSeen) -> Path | None:
        """The task's own log file (a LocalExecutor worker writes one), or the run's log (in-process tasks)."""
        own = (settings.paths().airflow_home / "logs" / f"dag_id={self.dag_id}" / f"run_id={self.run_id}"
               / f"task_id={task.task_id}" / f"attempt={task.try_number}.log")
        return own if own.exists() else self.run_log

    def _error(self, task: TaskSeen) -> str:
        path = self.task_log(task)
        if path is None:
            return "    (its output was streamed above)"
        try:
            with open(path, "rb") as fh:
                fh.seek(task.log_offset if path == self.run_log else 0)
                text = fh.read().decode(errors="replace")
        except OSError:
            text = ""
        lines = [line.strip() for line in text.splitlines() if _ERROR.search(line)][:ERROR_LINES]
        shown = "\n".join(f"    {line[:200]}" for line in lines) or "    (no error line found)"
        return f"{shown}\n    full log: {path}"
