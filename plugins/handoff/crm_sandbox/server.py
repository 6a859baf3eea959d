"""The HTTP side of the CRM sandbox: a threaded stdlib server in front of `SandboxApp`,
startable in-process (`start_sandbox`) and seedable (`load_objects`, `init_from`)."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from .app import Response, SandboxApp
from .limits import Faults, parse_rate_limit
from .loading import load_api_objects, read_jsonl_gz
from .model import OBJECT_TYPES
from .store import Store

log = logging.getLogger(__name__)

INIT_OBJECTS: tuple[str, ...] = ("owners", "companies", "contacts", "deals", "meetings", "calls", "tasks")


def load_objects(state_path: str | os.PathLike[str], object_type: str,
                 objects: Iterable[dict[str, Any]], *, replace: bool = False) -> int:
    """Upsert objects (HubSpot v3 shape, as in docs/data-contracts.md) into a state file.

    `object_type` is one of contacts, companies, deals, meetings, calls, tasks or owners.
    With `replace=True` the whole state is emptied first. Returns how many objects were loaded.
    """
    store = Store(state_path)
    try:
        with store.write() as conn:
            if replace:
                store.clear(conn)
            return load_api_objects(store, conn, object_type, objects, source=f"<{object_type}>")
    finally:
        store.close()


def create_properties(state_path: str | os.PathLike[str], object_type: str,
                      definitions: Iterable[dict[str, Any]]) -> list[str]:
    """Create custom properties in a state file, as `POST /crm/v3/properties/{objectType}` would (an existing
    name is left as it is). Returns the names created."""
    from .model import custom_property_problems  # noqa: PLC0415

    store = Store(state_path)
    created: list[str] = []
    try:
        with store.write() as conn:
            existing = store.property_definitions(conn, object_type)
            for definition in definitions:
                problems = custom_property_problems(definition, object_type)
                if problems:
                    raise ValueError(f"{object_type}.{definition.get('name')}: {'; '.join(problems)}")
                if definition["name"] not in existing:
                    store.save_property(conn, object_type, dict(definition))
                    created.append(definition["name"])
    finally:
        store.close()
    return created


def create_handoff_properties(state_path: str | os.PathLike[str]) -> list[str]:
    """The custom properties handoff writes (`handoff.crm.properties.HANDOFF_PROPERTIES`), created in a state."""
    from handoff.crm.properties import HANDOFF_PROPERTIES  # noqa: PLC0415

    return [f"{object_type}.{name}" for object_type, definitions in HANDOFF_PROPERTIES.items()
            for name in create_properties(state_path, object_type, definitions)]


def init_from(state_path: str | os.PathLike[str], directory: str | os.PathLike[str]) -> dict[str, int]:
    """Replace the state with the sample's `crm/<object>.jsonl.gz` files (DIR may be the sample
    folder or its `crm/` folder). Missing object files load as empty. Returns counts per object.

    The sample stands for an account already set up for handoff: its custom properties (handoff_score,
    handoff_reasons, handoff_sql_at, task handoff_dedupe_key) are created too."""
    root = Path(directory)
    crm_dir = root / "crm" if (root / "crm").is_dir() else root
    files = {name: crm_dir / f"{name}.jsonl.gz" for name in INIT_OBJECTS}
    if not any(path.exists() for path in files.values()):
        raise FileNotFoundError(f"no CRM sample files (owners.jsonl.gz, contacts.jsonl.gz, ...) in {crm_dir}; "
                                "run `handoff sample --out DIR` first and pass that DIR")
    counts: dict[str, int] = {}
    store = Store(state_path)
    try:
        with store.write() as conn:
            store.clear(conn)
            for name, path in files.items():
                counts[name] = (load_api_objects(store, conn, name, read_jsonl_gz(path), source=str(path))
                                if path.exists() else 0)
    finally:
        store.close()
    create_handoff_properties(state_path)
    return counts


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], app: SandboxApp) -> None:
        self.app = app
        self.open_sockets: set[socket.socket] = set()
        self.sockets_lock = threading.Lock()
        super().__init__(address, _Handler)

    def close_client_sockets(self) -> None:
        with self.sockets_lock:
            sockets = list(self.open_sockets)
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server
    timeout = 120  # idle keep-alive connections are closed after this many seconds
    wbufsize = 1 << 16  # headers and body leave in one send (no Nagle/delayed-ACK stall)

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.server.sockets_lock:
            self.server.open_sockets.add(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            with self.server.sockets_lock:
                self.server.open_sockets.discard(self.connection)

    def _dispatch(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            response = self.server.app.handle(self.command, self.path, headers, body)
        except Exception:  # a bug must answer 500, not hang the client
            log.exception("crm sandbox: unhandled error for %s %s", self.command, self.path)
            response = Response(500, b'{"status":"error","message":"internal sandbox error",'
                                     b'"category":"INTERNAL_ERROR"}', {"Content-Type": "application/json"})
        if response.drop:
            self.close_connection = True
            try:
                self.wfile.flush()
            except OSError:
                pass
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        self.send_response(response.status)
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        if response.body and self.command != "HEAD":
            self.wfile.write(response.body)

    do_GET = do_POST = do_PATCH = do_DELETE = do_PUT = _dispatch

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        log.debug("crm sandbox: " + format, *args)


class SandboxHandle:
    """A running sandbox: `.url`, `.port`, `.app` (stats, faults, clock), `.stop()`."""

    def __init__(self, server: _Server, thread: threading.Thread, store: Store) -> None:
        self._server = server
        self._thread = thread
        self._store = store
        host, port = server.server_address[:2]
        self.port: int = port
        self.url: str = f"http://{host}:{port}"
        self.app: SandboxApp = server.app

    @property
    def state_path(self) -> Path:
        return self._store.path

    def stats(self) -> dict[str, Any]:
        return self.app.stats.snapshot()

    def set_faults(self, faults: Faults | dict[str, Any] | None) -> Faults:
        """Replace the fault knobs (a dict is merged over the defaults); the fault sequence restarts."""
        configured = faults if isinstance(faults, Faults) else Faults.from_dict(faults or {})
        self.app.faults.configure(configured)
        return configured

    def stop(self) -> None:
        self._server.shutdown()
        self._server.close_client_sockets()
        self._server.server_close()
        self._thread.join(timeout=10)
        self._store.close()

    def __enter__(self) -> SandboxHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_sandbox(
    state_path: str | os.PathLike[str],
    port: int = 0,
    *,
    token: str,
    rate_limit: tuple[int, float] | str | None = (100, 10.0),
    faults: Faults | dict[str, Any] | None = None,
    host: str = "127.0.0.1",
    daily_limit: int | None = 250_000,
    search_rate_limit: tuple[int, float] | str | None = "5/1",
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
    init_from_dir: str | os.PathLike[str] | None = None,
) -> SandboxHandle:
    """Start the sandbox in a background thread and return once it accepts connections.

    `rate_limit` is (requests, window seconds) per token, or None for no limit; `search_rate_limit` the same for
    the search endpoints (HubSpot: 5 per second, on by default, apart from `rate_limit`); `clock` returns
    epoch seconds and drives updatedAt/lastmodifieddate and the rate limiter; `sleep` is used
    for injected latency and timeouts (tests pass a no-op).
    """
    if init_from_dir is not None:
        init_from(state_path, init_from_dir)
    store = Store(state_path)
    fault_config = faults if isinstance(faults, Faults) else Faults.from_dict(faults or {})
    app = SandboxApp(store, token, rate_limit=parse_rate_limit(rate_limit), daily_limit=daily_limit,
                     search_rate_limit=parse_rate_limit(search_rate_limit), faults=fault_config, clock=clock,
                     sleep=sleep)
    try:
        server = _Server((host, port), app)
    except OSError:
        store.close()
        raise
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              name=f"crm-sandbox-{server.server_address[1]}", daemon=True)
    thread.start()
    return SandboxHandle(server, thread, store)


__all__ = ["INIT_OBJECTS", "OBJECT_TYPES", "SandboxHandle", "create_handoff_properties", "create_properties",
           "init_from", "load_objects", "start_sandbox"]
