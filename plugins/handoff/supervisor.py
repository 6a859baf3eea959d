"""Supervised background processes: the long-running local services ``handoff airflow up`` starts.

Each service is a small supervisor process (``python -m handoff.supervisor NAME FOLDER -- COMMAND…``) in a session
of its own, which runs the command as its child, writes what it runs to ``FOLDER/NAME.child.json`` and starts it
again when it exits unasked (after 2, 4, 8 … s; it gives up after 5 exits within 5 minutes, and ``status`` then
reports the service dead). Under ``FOLDER``: ``NAME.pid`` (the supervisor's pid, which is also its process group)
and ``NAME.log`` (the supervisor's and the command's output).

Everything a service starts stays in the supervisor's session (Airflow puts each task in a process group of its
own, but not in a session of its own): ``stop`` signals the process groups, then every process still in one of the
services' sessions, so nothing a service started outlives ``handoff airflow down``. (Not the environment: Airflow's
processes set their title with setproctitle, which overwrites what /proc/<pid>/environ shows.) The supervisor itself
carries ``HANDOFF_SUPERVISED=<FOLDER>`` in its environment, so a pid file pointing at a reused pid is not believed.
Secrets reach a service through its environment, never its command line.

A service started with ``lock=`` (the scheduler, with ``handoff run``'s run lock) has its supervisor hold an exclusive
flock on that file for as long as it runs, with a note saying who holds it written into the file: the supervisor
does not start its command while someone else holds the lock, and whoever takes the lock meanwhile is told who has
it (``airflow_run.run_lock``). The lock goes with the supervisor, however it ends.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from handoff.warehouse.local import _pid_alive

MARKER = "HANDOFF_SUPERVISED"
MAX_EXITS, EXIT_WINDOW_SECONDS, MAX_BACKOFF_SECONDS = 5, 300.0, 30.0


class ServicesError(RuntimeError):
    """A local service (Airflow's, the CRM sandbox, Redis) could not be started, reached or stopped; the message
    says what to do."""


@dataclass(frozen=True)
class Service:
    name: str
    folder: Path

    @property
    def pidfile(self) -> Path:
        return self.folder / f"{self.name}.pid"

    @property
    def logfile(self) -> Path:
        return self.folder / f"{self.name}.log"

    @property
    def childfile(self) -> Path:
        return self.folder / f"{self.name}.child.json"

    def recorded_pid(self) -> int | None:
        try:
            return int(self.pidfile.read_text())
        except (FileNotFoundError, ValueError):
            return None

    def supervisor_pid(self) -> int | None:
        """The supervisor's pid, if it is alive and is ours (a reused pid of another program is not)."""
        pid = self.recorded_pid()
        return pid if pid and _pid_alive(pid) and marker_of(pid) == str(self.folder) else None

    def child(self) -> dict:
        """What the supervisor last wrote: {"pid", "restarts", "started_at"} and, once it gave up, "exit_code"."""
        try:
            return json.loads(self.childfile.read_text())
        except (FileNotFoundError, ValueError):
            return {}

    def child_pid(self) -> int | None:
        pid, session = self.child().get("pid"), self.recorded_pid()
        return pid if pid and session and _pid_alive(pid) and session_of(pid) == session else None

    def alive(self) -> bool:
        return self.supervisor_pid() is not None and self.child_pid() is not None

    def describe(self) -> str:
        """One line for ``status``: state, pids, restarts."""
        sup, child = self.supervisor_pid(), self.child()
        restarts = child.get("restarts", 0)
        again = f", restarted {restarts}×" if restarts else ""
        if sup is None and not self.pidfile.exists():
            return "stopped"
        if sup is None:
            code = child.get("exit_code")
            return "DEAD (supervisor gone" + (f"; last exit code {code}" if code is not None else "") + f"{again})"
        if self.child_pid() is None:
            return f"DEAD (supervisor pid {sup} alive, its command is not running{again}: restarting or giving up)"
        return f"running (pid {child['pid']}, supervisor {sup}{again}, since {child.get('started_at', '?')})"


def start(service: Service, command: Sequence[str], env: Mapping[str, str], *, lock: Path | None = None,
          note: Mapping[str, object] | None = None) -> int:
    """Start ``command`` under a supervisor in the background; returns the supervisor's pid. With ``lock``, the
    supervisor holds an exclusive flock on that file while it runs, ``note`` (who holds it) and its own pid written
    into it as JSON."""
    service.folder.mkdir(parents=True, exist_ok=True)
    service.childfile.unlink(missing_ok=True)
    env = {**env, MARKER: str(service.folder)}
    locking = ["--lock", str(lock), json.dumps(dict(note or {}))] if lock is not None else []
    with open(service.logfile, "ab") as log:
        proc = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-m", "handoff.supervisor", service.name, str(service.folder), *locking, "--",
             *command],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    service.pidfile.write_text(str(proc.pid))
    return proc.pid


def stop(services: Sequence[Service], timeout: float = 60.0) -> list[int]:
    """SIGTERM every service's supervisor (which stops its command), then every process left in the services'
    sessions; SIGKILL what is left after ``timeout`` s. Returns the pids still there at the end (none, unless the
    kernel refused)."""
    sessions = {pid for pid in (s.recorded_pid() for s in services) if pid}
    supervisors = [pid for pid in (s.supervisor_pid() for s in services) if pid is not None]
    # each supervisor passes one SIGTERM on to its command (a second one, sent to the whole group at once, left
    # Airflow's api-server, dag-processor and triggerer hanging in their shutdown until the SIGKILL)
    for pid in supervisors:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while any(_pid_alive(pid) for pid in supervisors) and time.monotonic() < deadline:
        time.sleep(0.2)
    for pid in pids_in_sessions(sessions):  # what the commands left behind (a task's own process group)
        _signal(pid, signal.SIGTERM)
    while pids_in_sessions(sessions) and time.monotonic() < deadline:
        time.sleep(0.2)
    for pid in pids_in_sessions(sessions):
        _signal(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while pids_in_sessions(sessions) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = pids_in_sessions(sessions)
    if not left:
        for service in services:
            service.pidfile.unlink(missing_ok=True)
    return left


def pids_in_sessions(sessions: set[int]) -> list[int]:
    """Live processes in any of ``sessions`` (session ids: a supervisor's pid is its session's id)."""
    me = os.getpid()
    return sorted(pid for pid in _all_pids() if pid != me and session_of(pid) in sessions and _pid_alive(pid))


def session_of(pid: int) -> int | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[3])  # after the name: state, ppid, pgrp, session
    except (OSError, IndexError, ValueError):
        return None


def marker_of(pid: int) -> str | None:
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return None
    prefix = MARKER.encode() + b"="
    for item in environ.split(b"\0"):
        if item.startswith(prefix):
            return item[len(prefix):].decode(errors="replace")
    return None


def _all_pids() -> list[int]:
    return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


# -- the supervisor process itself ---------------------------------------------------------------------------------
def try_lock(path: Path) -> tuple[int, bool]:
    """Open ``path`` (created when missing) and try an exclusive flock on it without waiting: (its descriptor,
    whether the lock was taken). Closing the descriptor (not inherited by children) releases the lock."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return fd, False
    return fd, True


@contextlib.contextmanager
def holding(lock: Path | None, note: str):
    """Hold an exclusive flock on ``lock`` (nothing when None), the JSON object ``note`` with this process's pid
    written into the file; yields False, and holds nothing, when another process has it."""
    if lock is None:
        yield True
        return
    fd, taken = try_lock(lock)
    try:
        if not taken:
            yield False
            return
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({**json.loads(note or "{}"), "pid": os.getpid()}).encode(), 0)
        yield True
    finally:
        os.close(fd)  # the only descriptor (not inherited by the command): closing it releases the lock


def supervise(name: str, folder: Path, command: Sequence[str], lock: Path | None = None, note: str = "") -> int:
    with holding(lock, note) as held:
        if not held:
            _say(f"{name} not started: {lock} is held by another process ({_read(lock)})")
            _write_child(Service(name, folder), {"exit_code": 3})
            return 3
        return _supervise(name, folder, command)


def _read(path: Path) -> str:
    try:
        return path.read_text()[:300]
    except OSError as exc:
        return str(exc)


def _supervise(name: str, folder: Path, command: Sequence[str]) -> int:
    service = Service(name, folder)
    stopping = threading.Event()
    child: subprocess.Popen | None = None

    def on_signal(signum: int, _frame) -> None:
        stopping.set()
        if child is not None and child.poll() is None:
            child.send_signal(signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    restarts, exits = 0, []
    while not stopping.is_set():
        child = subprocess.Popen(list(command), stdin=subprocess.DEVNULL)  # noqa: S603 - given by handoff itself
        _write_child(service, {"pid": child.pid, "restarts": restarts,
                               "started_at": datetime.now(UTC).isoformat(timespec="seconds")})
        code = child.wait()
        if stopping.is_set():
            break
        now = time.monotonic()
        exits = [t for t in exits if now - t < EXIT_WINDOW_SECONDS] + [now]
        if len(exits) >= MAX_EXITS:
            _say(f"{name} exited with {code} {len(exits)} times within {EXIT_WINDOW_SECONDS:.0f} s; giving up")
            _write_child(service, {**service.child(), "exit_code": code})
            return 1
        delay = min(2.0 ** len(exits), MAX_BACKOFF_SECONDS)
        _say(f"{name} exited with {code}; starting it again in {delay:.0f} s")
        restarts += 1
        stopping.wait(delay)  # a restart backoff, cut short by a stop
    return 0


def _write_child(service: Service, data: dict) -> None:
    tmp = service.childfile.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    tmp.replace(service.childfile)


def _say(message: str) -> None:
    print(f"[supervisor {datetime.now(UTC):%Y-%m-%dT%H:%M:%SZ}] {message}", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    lock, note = None, ""
    if len(args) > 5 and args[2] == "--lock":
        lock, note = Path(args[3]), args[4]
        del args[2:5]
    if len(args) < 4 or args[2] != "--":
        print("usage: python -m handoff.supervisor NAME FOLDER [--lock FILE JSON] -- COMMAND [ARG…]", file=sys.stderr)
        return 2
    return supervise(args[0], Path(args[1]), args[3:], lock, note)


if __name__ == "__main__":
    sys.exit(main())
