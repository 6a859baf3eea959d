"""The local warehouse: a private PostgreSQL cluster the project starts itself.

It runs under ``.local/warehouse`` (``$HANDOFF_HOME/warehouse``) on port 55432 (``HANDOFF_WAREHOUSE_PORT``).
Binaries come from the machine's PostgreSQL server package when there is one (``/usr/lib/postgresql/<v>/bin``
or ``pg_config --bindir``), else from the ``pgserver`` wheel (PostgreSQL 16 shipped on PyPI, pinned in
requirements.txt), so a machine without root and without apt still gets a real server. PostgreSQL refuses to
run as root: when we are root the cluster is owned by and runs as the ``postgres`` system user.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from handoff import settings

ROLES = ("loader", "transformer", "pusher", "bi_reader")
ADMIN_USER = "handoff_admin"


class WarehouseError(RuntimeError):
    """A problem with the local warehouse, phrased as what to do about it."""


@dataclass(frozen=True)
class Binaries:
    bindir: Path
    origin: str  # "system" or "pgserver"

    def tool(self, name: str) -> str:
        return str(self.bindir / name)


def find_binaries() -> Binaries:
    """The PostgreSQL server binaries to use, best first; a clear error when there are none.

    ``HANDOFF_PG_BINARIES=pgserver`` forces the wheel's binaries (to test that path on a machine that has both).
    """
    candidates: list[Path] = []
    if os.environ.get("HANDOFF_PG_BINARIES") == "pgserver":
        return _pgserver_binaries() or _no_binaries()
    pg_config = shutil.which("pg_config")
    if pg_config:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        if out.returncode == 0:
            candidates.append(Path(out.stdout.strip()))
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: _version_key(p.parent.name))
    candidates.extend(reversed(versions))
    for bindir in candidates:
        if (bindir / "initdb").exists() and (bindir / "pg_ctl").exists() and (bindir / "postgres").exists():
            return Binaries(bindir, "system")
    return _pgserver_binaries() or _no_binaries()


def _pgserver_binaries() -> Binaries | None:
    try:
        import pgserver  # noqa: PLC0415  (optional; heavy)
    except ImportError:
        return None
    bindir = Path(pgserver.__file__).parent / "pginstall" / "bin"
    return Binaries(bindir, "pgserver") if (bindir / "initdb").exists() else None


def _no_binaries() -> Binaries:
    raise WarehouseError(
        "No PostgreSQL server binaries found (looked for pg_config, /usr/lib/postgresql/*/bin and the pgserver "
        "wheel). Either install the server (Debian: `apt-get install postgresql-15`), or `pip install "
        "pgserver==0.1.4` into the virtualenv (make install does), or set HANDOFF_WAREHOUSE_URL to an existing "
        "PostgreSQL."
    )


def _version_key(name: str) -> tuple[int, ...]:
    return tuple(int(p) for p in name.split(".") if p.isdigit())


def server_settings(binaries: Binaries) -> dict[str, str]:
    """The local warehouse's server settings, written at every start (so a cluster made by an older handoff gets them).

    A warehouse for batch loads on a small machine: fast bulk writes; durability of single commits matters less than
    throughput here (a crash loses at most the last ms of commits, never consistency). Full-page images in the WAL
    are compressed with lz4 where the server has it, else not at all: pglz spends more CPU than it saves in writes
    (tier-M attribution insert of one day, 127,414 rows, cold: 29 s with pglz, 11.7 s with lz4, 9.4 s uncompressed;
    lz4 writes 40% less WAL than none).
    random_page_cost stays at PostgreSQL's 4: at 1.1 (the usual SSD setting) the tier-M one-day build chose index
    probes where a scan was faster here (engagement facts' delete of the changed contacts' rows: 2.2 s by a hash join
    over a scan, 8-11 s by 26,000 index probes, warm); the one statement that gains is priced so on its own
    (attribution_changes_prepare in dbt_project/macros/visitor_changes.sql).
    autovacuum_vacuum_cost_limit 2000 (PostgreSQL's default, 200, dates from spinning disks): a new table's first
    vacuum dirties every page, and at 200 autovacuum's workers together got through about 3,400 pages/s (27 MB/s,
    pg_stat_progress_vacuum): after a tier-M full build it ran for 20 minutes, beside whatever ran next.
    shared_buffers: a sixth of the machine's memory (shared_buffers_mib), not a fixed 512MB.
    """
    return {
        "shared_buffers": f"{shared_buffers_mib(memory_bytes())}MB", "work_mem": "64MB",
        "maintenance_work_mem": "256MB",
        "max_wal_size": "4GB", "synchronous_commit": "off", "autovacuum_vacuum_cost_limit": "2000",
        "wal_compression": "lz4" if _has_lz4(binaries) else "off",
        "max_connections": "100", "log_min_duration_statement": "-1", "log_line_prefix": "%m [%p] %u@%d ",
    }


def shared_buffers_mib(total_bytes: int) -> int:
    """PostgreSQL's own cache: a sixth of the machine's memory, at least 128 MiB and at most 8 GiB. PostgreSQL's
    guide starts a dedicated server at a quarter; this cluster shares the machine with Airflow, dbt and the
    dashboard, and the OS's page cache holds the rest. On 23.5 GiB the tier-M one-day build read 3.88 million
    blocks (30 GB) from the page cache with 512MB, 76.2 s; with 4,017 MB 0.84 million, 73.3 s (median of three
    each, bench/results/M-2026-12-07-*-b10ea02*.json)."""
    return max(128, min(8192, total_bytes // 6 // 2**20))


CGROUP_MEMORY_MAX = Path("/sys/fs/cgroup/memory.max")


def memory_bytes() -> int:
    """Physical memory, or the container's memory limit (cgroup v2) when that is lower ("max": none)."""
    physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    with contextlib.suppress(OSError, ValueError):
        return min(physical, int(CGROUP_MEMORY_MAX.read_text().strip()))
    return physical


def _has_lz4(binaries: Binaries) -> bool:
    pg_config = binaries.bindir / "pg_config"
    if not pg_config.exists():
        return False
    out = subprocess.run([str(pg_config), "--configure"], capture_output=True, text=True, check=False)
    return "--with-lz4" in out.stdout


class LocalCluster:
    """Start, stop and inspect the project's private cluster. Every method is safe to call twice."""

    def __init__(self, root: Path | None = None, port: int | None = None) -> None:
        self.root = root or settings.paths().warehouse
        self.port = port or settings.warehouse_port()
        self.pgdata = self.root / "pgdata"
        self.logfile = self.root / "postgres.log"
        self.credentials_file = self.root / "credentials.json"

    # -- who runs the server ---------------------------------------------------------------------------
    def _run_as(self) -> pwd.struct_passwd | None:
        """None when we can run postgres ourselves; the system user to run it as when we are root."""
        if os.geteuid() != 0:
            return None
        try:
            return pwd.getpwnam("postgres")
        except KeyError:
            subprocess.run(
                ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "postgres"],
                check=True,
            )
            return pwd.getpwnam("postgres")

    def _cmd(self, args: list[str], **kwargs) -> subprocess.CompletedProcess:
        user = self._run_as()
        if user is not None:
            args = ["runuser", "-u", user.pw_name, "--", *args]
        return subprocess.run(args, capture_output=True, text=True, check=False, **kwargs)

    # -- state -----------------------------------------------------------------------------------------
    def postmaster_pid(self) -> int | None:
        pidfile = self.pgdata / "postmaster.pid"
        try:
            return int(pidfile.read_text().splitlines()[0])
        except (FileNotFoundError, IndexError, ValueError):
            return None

    def is_running(self) -> bool:
        pid = self.postmaster_pid()
        if pid is None or not _pid_alive(pid):
            return False
        return _process_name(pid) in {"postgres", "postmaster"}

    def accepts_connections(self) -> bool:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=1):
            return True
        return False

    # -- lifecycle -------------------------------------------------------------------------------------
    def up(self, log=print) -> bool:
        """Initialise (first time) and start the cluster. Returns False when it was already running."""
        if self.is_running():
            self._wait_ready()
            return False
        self._clear_stale_pid(log)
        if _port_in_use(self.port):
            raise WarehouseError(
                f"Port {self.port} is already in use by another program, so the warehouse cannot start there. "
                f"Stop that program, or choose another port: HANDOFF_WAREHOUSE_PORT=55433 handoff warehouse up"
            )
        binaries = find_binaries()
        if not (self.pgdata / "PG_VERSION").exists():
            self._initdb(binaries, log)
        self._write_settings(binaries)
        self._prepare_ownership()
        log(f"starting PostgreSQL ({binaries.origin} binaries, {binaries.bindir}) on port {self.port}")
        settings = {"listen_addresses": "127.0.0.1", "unix_socket_directories": str(self.root)}
        opts = f"-p {self.port} " + " ".join(f"-c {name}={shlex.quote(value)}" for name, value in settings.items())
        res = self._cmd(
            [binaries.tool("pg_ctl"), "start", "-w", "-t", "60", "-D", str(self.pgdata), "-l", str(self.logfile),
             "-o", opts]
        )
        if res.returncode != 0:
            tail = self._log_tail()
            raise WarehouseError(f"PostgreSQL did not start (pg_ctl: {res.stderr.strip() or res.stdout.strip()})"
                                 f"\n--- {self.logfile} (last lines) ---\n{tail}")
        self._wait_ready()
        return True

    def _write_settings(self, binaries: Binaries) -> None:
        """server_settings into pgdata/handoff.conf at every start, included at the end of postgresql.conf (once):
        they replace what an older handoff appended there, and ALTER SYSTEM (postgresql.auto.conf, read last)
        still overrides them."""
        lines = [f"{name} = '{value}'\n" for name, value in server_settings(binaries).items()]
        (self.pgdata / "handoff.conf").write_text(
            "# written by handoff at every start (warehouse/local.py, server_settings); ALTER SYSTEM overrides\n"
            + "".join(lines))
        main = self.pgdata / "postgresql.conf"
        include = "include_if_exists = 'handoff.conf'"
        if include not in main.read_text():
            with main.open("a") as conf:
                conf.write(f"\n# handoff local warehouse\n{include}\n")

    def down(self, log=print) -> bool:
        if not self.is_running():
            self._clear_stale_pid(log)
            return False
        binaries = find_binaries()
        res = self._cmd([binaries.tool("pg_ctl"), "stop", "-w", "-m", "fast", "-D", str(self.pgdata)])
        if res.returncode != 0:
            raise WarehouseError(f"pg_ctl stop failed: {res.stderr.strip()}")
        return True

    def _initdb(self, binaries: Binaries, log) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        creds = self.credentials()
        pwfile = self.root / ".initdb-pw"
        pwfile.write_text(creds["admin"]["password"])
        self._prepare_ownership()
        log(f"initialising a new cluster in {self.pgdata}")
        try:
            res = self._cmd([binaries.tool("initdb"), "-D", str(self.pgdata), "-U", ADMIN_USER, "--pwfile", str(pwfile),
                             "--auth-local=scram-sha-256", "--auth-host=scram-sha-256", "-E", "UTF8",
                             "--locale=C.UTF-8", "--lc-collate=C", "--no-instructions"])
        finally:
            pwfile.unlink(missing_ok=True)
        if res.returncode != 0:
            shutil.rmtree(self.pgdata, ignore_errors=True)
            raise WarehouseError(f"initdb failed: {res.stderr.strip()}")

    def _prepare_ownership(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        user = self._run_as()
        if user is None:
            return
        # the cluster's own folder belongs to the server's user; parents only need to be traversable
        for path in [self.root, *(p for p in self.root.rglob("*") if not p.is_symlink())]:
            if path == self.credentials_file:
                continue
            with contextlib.suppress(FileNotFoundError):
                os.chown(path, user.pw_uid, user.pw_gid)
        parent = self.root
        while parent != parent.parent:
            parent = parent.parent
            mode = parent.stat().st_mode
            if not mode & 0o001:
                os.chmod(parent, mode | 0o001)

    def _clear_stale_pid(self, log) -> None:
        pid = self.postmaster_pid()
        if pid is not None and not self.is_running():
            log(f"removing a stale postmaster.pid (pid {pid} is not running; the server crashed or was killed)")
            (self.pgdata / "postmaster.pid").unlink(missing_ok=True)
            # the socket's lock file names the dead pid too; postgres would refuse to start beside it
            for lock in self.root.glob(".s.PGSQL.*.lock"):
                lock.unlink(missing_ok=True)
                lock.with_suffix("").unlink(missing_ok=True)

    def _wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.accepts_connections():
                return
            time.sleep(0.1)
        raise WarehouseError(f"PostgreSQL on port {self.port} does not accept connections; see {self.logfile}")

    def _log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.logfile.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"

    # -- credentials -----------------------------------------------------------------------------------
    def credentials(self) -> dict[str, dict[str, str]]:
        """Generated passwords for the admin and every role, kept in a 0600 file under the cluster folder."""
        if self.credentials_file.exists():
            return json.loads(self.credentials_file.read_text())
        creds = {"admin": {"user": ADMIN_USER, "password": secrets.token_urlsafe(24)}, **new_role_credentials()}
        write_private_json(self.credentials_file, creds)
        return creds


def new_role_credentials() -> dict[str, dict[str, str]]:
    """A fresh generated password for every role of docs/architecture.md ("Warehouse roles")."""
    return {role: {"user": f"handoff_{role}", "password": secrets.token_urlsafe(24)} for role in ROLES}


def write_private_json(path: Path, data: dict) -> None:
    """Write ``data`` to ``path`` readable by its owner only (0600): the place generated secrets are kept."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, indent=2)


def _pid_alive(pid: int) -> bool:
    """True for a live process; a zombie (killed, not yet reaped: common in containers) counts as dead."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state not in {"Z", "X"}


def _process_name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def kill_postmaster(cluster: LocalCluster) -> None:
    """SIGKILL the postmaster (fault tests: a crash leaves a stale pid file behind)."""
    pid = cluster.postmaster_pid()
    if pid:
        os.kill(pid, signal.SIGKILL)
