"""The sandbox's persistent state: one SQLite file (WAL), shared by the server's threads.

Reads run in a deferred transaction (a consistent snapshot); writes are serialised by a
process-wide lock plus `BEGIN IMMEDIATE`, so read-modify-write rules (forward-only lifecycle
stage, unique values) hold under concurrent requests. Reading objects in the API's shape into these
rows (`--init-from`, `load_objects`) is `loading.py`.
"""

from __future__ import annotations

import os
import queue
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from .model import UNIQUE_PROPERTIES, reverse_label

_SCHEMA = """
CREATE TABLE IF NOT EXISTS objects (
    object_type TEXT NOT NULL,
    id INTEGER NOT NULL,
    properties BLOB NOT NULL,
    created_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL,
    archived INTEGER NOT NULL DEFAULT 0,
    archived_ms INTEGER,
    email TEXT,
    unique_value TEXT,
    PRIMARY KEY (object_type, id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS objects_by_updated ON objects (object_type, archived, updated_ms);
CREATE INDEX IF NOT EXISTS objects_by_email ON objects (object_type, email) WHERE email IS NOT NULL;
CREATE UNIQUE INDEX IF NOT EXISTS objects_unique_value ON objects (object_type, unique_value)
    WHERE unique_value IS NOT NULL AND archived = 0;
CREATE TABLE IF NOT EXISTS history (
    object_type TEXT NOT NULL,
    id INTEGER NOT NULL,
    property TEXT NOT NULL,
    seq INTEGER NOT NULL,
    value TEXT,
    ts_ms INTEGER NOT NULL,
    source_type TEXT NOT NULL,
    source_id TEXT,
    updated_by_user_id INTEGER,
    PRIMARY KEY (object_type, id, property, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS associations (
    from_type TEXT NOT NULL,
    from_id INTEGER NOT NULL,
    to_type TEXT NOT NULL,
    to_id INTEGER NOT NULL,
    label TEXT NOT NULL,
    PRIMARY KEY (from_type, from_id, to_type, to_id, label)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS owners (
    id INTEGER PRIMARY KEY,
    record BLOB NOT NULL,
    archived INTEGER NOT NULL DEFAULT 0,
    email TEXT,
    user_id INTEGER
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS properties (
    object_type TEXT NOT NULL,
    name TEXT NOT NULL,
    definition BLOB NOT NULL,
    archived INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (object_type, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS merges (
    object_type TEXT NOT NULL,
    from_id INTEGER NOT NULL,
    to_id INTEGER NOT NULL,
    PRIMARY KEY (object_type, from_id)
) WITHOUT ROWID;
"""

_FIRST_NEW_ID = 100_001
_SELECT_RECORD = "SELECT id, properties, created_ms, updated_ms, archived, archived_ms FROM objects "


@dataclass
class Record:
    """One CRM object as stored (properties are HubSpot strings, times epoch ms)."""

    object_type: str
    id: int
    properties: dict[str, Any]
    created_ms: int
    updated_ms: int
    archived: bool = False
    archived_ms: int | None = None
    write_trace_id: str | None = field(default=None, compare=False)

    @classmethod
    def from_row(cls, object_type: str, row: sqlite3.Row | tuple) -> Record:
        object_id, props, created_ms, updated_ms, archived, archived_ms = row
        return cls(object_type, object_id, orjson.loads(props), created_ms, updated_ms, bool(archived), archived_ms)


class Store:
    """A pool of SQLite connections over one state file."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # The state holds contacts' emails and phones: owner-only (0600) from the first byte, whatever the umask.
        # SQLite gives its -wal and -shm files the database file's mode.
        os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
        if self.path.stat().st_mode & 0o077:
            os.chmod(self.path, 0o600)  # an older, looser state file (ours: a file we do not own raises here)
        self._pool: queue.SimpleQueue[sqlite3.Connection] = queue.SimpleQueue()
        self._all: list[sqlite3.Connection] = []
        self._all_lock = threading.Lock()
        self._write_lock = threading.RLock()
        conn = self._connect()
        conn.executescript(_SCHEMA)
        self._pool.put(conn)

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA busy_timeout=30000")
        with self._all_lock:
            self._all.append(conn)
        return conn

    def _acquire(self) -> sqlite3.Connection:
        try:
            return self._pool.get_nowait()
        except queue.Empty:
            return self._connect()

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        conn = self._acquire()
        try:
            conn.execute("BEGIN")
            try:
                yield conn
            finally:
                conn.execute("COMMIT")
        finally:
            self._pool.put(conn)

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        with self._write_lock:
            conn = self._acquire()
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
            finally:
                self._pool.put(conn)

    def close(self) -> None:
        with self._all_lock:
            conns, self._all = self._all, []
        for conn in conns:
            try:
                conn.close()
            except sqlite3.Error:
                pass

    # ------------------------------------------------------------------ reads

    def get(self, conn: sqlite3.Connection, object_type: str, object_id: int) -> Record | None:
        row = conn.execute(_SELECT_RECORD + "WHERE object_type = ? AND id = ?", (object_type, object_id)).fetchone()
        return Record.from_row(object_type, row) if row else None

    def get_by_email(self, conn: sqlite3.Connection, email: str, archived: bool = False) -> Record | None:
        row = conn.execute(
            _SELECT_RECORD + "WHERE object_type = 'contacts' AND email = ? AND archived = ? ORDER BY id LIMIT 1",
            (email.strip().lower(), int(archived))).fetchone()
        return Record.from_row("contacts", row) if row else None

    def page(self, conn: sqlite3.Connection, object_type: str, after_id: int, limit: int,
             archived: bool) -> list[Record]:
        rows = conn.execute(
            _SELECT_RECORD + "WHERE object_type = ? AND archived = ? AND id >= ? ORDER BY id LIMIT ?",
            (object_type, int(archived), after_id, limit)).fetchall()
        return [Record.from_row(object_type, r) for r in rows]

    def scan(self, conn: sqlite3.Connection, object_type: str, updated_min: int | None = None,
             updated_max: int | None = None) -> Iterator[Record]:
        sql = _SELECT_RECORD + ("WHERE object_type = ? AND archived = 0 AND updated_ms >= ? AND updated_ms <= ? "
                                "ORDER BY id")
        low = -(2**62) if updated_min is None else updated_min
        high = 2**62 if updated_max is None else updated_max
        for row in conn.execute(sql, (object_type, low, high)):
            yield Record.from_row(object_type, row)

    def find_unique(self, conn: sqlite3.Connection, object_type: str, value: str) -> int | None:
        row = conn.execute("SELECT id FROM objects WHERE object_type = ? AND unique_value = ? AND archived = 0",
                           (object_type, value)).fetchone()
        return row[0] if row else None

    def history(self, conn: sqlite3.Connection, object_type: str, ids: list[int],
                properties: list[str]) -> dict[int, dict[str, list[dict[str, Any]]]]:
        """History per id and property, newest first."""
        out: dict[int, dict[str, list[dict[str, Any]]]] = {i: {p: [] for p in properties} for i in ids}
        if not ids or not properties:
            return out
        sql = ("SELECT id, property, value, ts_ms, source_type, source_id, updated_by_user_id FROM history "
               "WHERE object_type = ? AND id IN (SELECT value FROM json_each(?)) "
               "AND property IN (SELECT value FROM json_each(?)) ORDER BY id, property, seq DESC")
        for object_id, prop, value, ts_ms, source_type, source_id, user_id in conn.execute(
                sql, (object_type, orjson.dumps(ids).decode(), orjson.dumps(properties).decode())):
            out[object_id][prop].append({"value": value, "ts_ms": ts_ms, "sourceType": source_type,
                                         "sourceId": source_id, "updatedByUserId": user_id})
        return out

    def associations(self, conn: sqlite3.Connection, object_type: str, ids: list[int],
                     to_types: list[str]) -> dict[int, dict[str, list[tuple[int, str]]]]:
        out: dict[int, dict[str, list[tuple[int, str]]]] = {i: {} for i in ids}
        if not ids or not to_types:
            return out
        sql = ("SELECT a.from_id, a.to_type, a.to_id, a.label FROM associations a "
               "JOIN objects o ON o.object_type = a.to_type AND o.id = a.to_id AND o.archived = 0 "
               "WHERE a.from_type = ? AND a.from_id IN (SELECT value FROM json_each(?)) "
               "AND a.to_type IN (SELECT value FROM json_each(?)) ORDER BY a.from_id, a.to_type, a.to_id")
        for from_id, to_type, to_id, label in conn.execute(
                sql, (object_type, orjson.dumps(ids).decode(), orjson.dumps(to_types).decode())):
            out[from_id].setdefault(to_type, []).append((to_id, label))
        return out

    def property_definitions(self, conn: sqlite3.Connection, object_type: str) -> dict[str, dict[str, Any]]:
        """The live custom properties of an object type: {name: definition as created}."""
        rows = conn.execute("SELECT name, definition FROM properties WHERE object_type = ? AND archived = 0 "
                            "ORDER BY name", (object_type,)).fetchall()
        return {name: orjson.loads(definition) for name, definition in rows}

    def save_property(self, conn: sqlite3.Connection, object_type: str, definition: dict[str, Any]) -> None:
        conn.execute("INSERT OR REPLACE INTO properties (object_type, name, definition, archived) VALUES (?, ?, ?, 0)",
                     (object_type, definition["name"], orjson.dumps(definition)))

    def merged_into(self, conn: sqlite3.Connection, object_type: str, object_id: int) -> int | None:
        """The surviving record's id for an id merged away, else None."""
        row = conn.execute("SELECT to_id FROM merges WHERE object_type = ? AND from_id = ?",
                           (object_type, object_id)).fetchone()
        return row[0] if row else None

    def record_merge(self, conn: sqlite3.Connection, object_type: str, from_id: int, to_id: int) -> None:
        """`from_id` now resolves to `to_id`, and so does every id that resolved to `from_id`."""
        conn.execute("UPDATE merges SET to_id = ? WHERE object_type = ? AND to_id = ?", (to_id, object_type, from_id))
        conn.execute("INSERT OR REPLACE INTO merges VALUES (?, ?, ?)", (object_type, from_id, to_id))

    def delete(self, conn: sqlite3.Connection, object_type: str, object_id: int) -> None:
        """Remove a record for good (a merge's secondary, a GDPR delete): row, history and associations."""
        conn.execute("DELETE FROM objects WHERE object_type = ? AND id = ?", (object_type, object_id))
        conn.execute("DELETE FROM history WHERE object_type = ? AND id = ?", (object_type, object_id))
        conn.execute("DELETE FROM associations WHERE (from_type = ? AND from_id = ?) OR (to_type = ? AND to_id = ?)",
                     (object_type, object_id, object_type, object_id))

    def move_associations(self, conn: sqlite3.Connection, object_type: str, from_id: int, to_id: int) -> None:
        rows = conn.execute("SELECT to_type, to_id, label FROM associations WHERE from_type = ? AND from_id = ?",
                            (object_type, from_id)).fetchall()
        for to_type, other_id, label in rows:
            if (to_type, other_id) != (object_type, to_id):
                self.associate(conn, object_type, to_id, to_type=to_type, to_id=other_id, label=label)

    def owner_is_active(self, conn: sqlite3.Connection, owner_id: str) -> bool:
        if not str(owner_id).isdigit():
            return False
        row = conn.execute("SELECT 1 FROM owners WHERE id = ? AND archived = 0", (int(owner_id),)).fetchone()
        return row is not None

    def owners_page(self, conn: sqlite3.Connection, after_id: int, limit: int, archived: bool,
                    email: str | None) -> list[dict[str, Any]]:
        sql = "SELECT record FROM owners WHERE archived = ? AND id >= ?"
        params: list[Any] = [int(archived), after_id]
        if email:
            sql += " AND email = ?"
            params.append(email.strip().lower())
        rows = conn.execute(sql + " ORDER BY id LIMIT ?", [*params, limit]).fetchall()
        return [orjson.loads(r[0]) for r in rows]

    def owner(self, conn: sqlite3.Connection, key: int, by_user_id: bool, archived: bool) -> dict[str, Any] | None:
        sql = ("SELECT record FROM owners WHERE user_id = ? AND archived = ?" if by_user_id else
               "SELECT record FROM owners WHERE id = ? AND archived = ?")
        row = conn.execute(sql, (key, int(archived))).fetchone()
        return orjson.loads(row[0]) if row else None

    # ------------------------------------------------------------------ writes

    def next_id(self, conn: sqlite3.Connection) -> int:
        row = conn.execute("SELECT value FROM meta WHERE key = 'next_id'").fetchone()
        next_id = int(row[0]) if row else _FIRST_NEW_ID
        conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('next_id', ?)", (str(next_id + 1),))
        return next_id

    def bump_next_id(self, conn: sqlite3.Connection, seen_max: int) -> None:
        """New records get ids above ``seen_max`` (the highest id loaded)."""
        row = conn.execute("SELECT value FROM meta WHERE key = 'next_id'").fetchone()
        current = int(row[0]) if row else _FIRST_NEW_ID
        if seen_max + 1 > current:
            conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('next_id', ?)", (str(seen_max + 1),))

    def save(self, conn: sqlite3.Connection, record: Record) -> None:
        props = record.properties
        email = props.get("email") if record.object_type == "contacts" else None
        unique_prop = UNIQUE_PROPERTIES.get(record.object_type)
        unique_value = props.get(unique_prop) if unique_prop else None
        conn.execute(
            "INSERT OR REPLACE INTO objects (object_type, id, properties, created_ms, updated_ms, archived, "
            "archived_ms, email, unique_value) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (record.object_type, record.id, orjson.dumps(props), record.created_ms, record.updated_ms,
             int(record.archived), record.archived_ms, email.strip().lower() if email else None,
             unique_value or None))

    def append_history(self, conn: sqlite3.Connection, object_type: str, object_id: int, prop: str, *,
                       value: str | None, ts_ms: int, source_type: str, source_id: str | None,
                       updated_by_user_id: int | None = None) -> None:
        row = conn.execute("SELECT MAX(seq) FROM history WHERE object_type = ? AND id = ? AND property = ?",
                           (object_type, object_id, prop)).fetchone()
        seq = (row[0] or 0) + 1
        conn.execute("INSERT INTO history VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                     (object_type, object_id, prop, seq, value, ts_ms, source_type, source_id, updated_by_user_id))

    def associate(self, conn: sqlite3.Connection, from_type: str, from_id: int, *, to_type: str, to_id: int,
                  label: str) -> None:
        conn.execute("INSERT OR IGNORE INTO associations VALUES (?, ?, ?, ?, ?)",
                     (from_type, from_id, to_type, to_id, label))
        conn.execute("INSERT OR IGNORE INTO associations VALUES (?, ?, ?, ?, ?)",
                     (to_type, to_id, from_type, from_id, reverse_label(label)))

    # ------------------------------------------------------------------ bulk load (loading.py reads the API shape)

    def clear(self, conn: sqlite3.Connection) -> None:
        for statement in ("DELETE FROM objects", "DELETE FROM history", "DELETE FROM associations",
                          "DELETE FROM owners", "DELETE FROM meta", "DELETE FROM properties", "DELETE FROM merges"):
            conn.execute(statement)

    def replace_history(self, conn: sqlite3.Connection, object_type: str, object_id: int,
                        rows: list[tuple[str, int, str | None, int, str, str | None, int | None]]) -> None:
        """A record's whole history, replacing what it had: rows of (property, seq, value, ts_ms, source_type,
        source_id, updated_by_user_id)."""
        conn.execute("DELETE FROM history WHERE object_type = ? AND id = ?", (object_type, object_id))
        conn.executemany("INSERT INTO history VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                         [(object_type, object_id, *row) for row in rows])

    def save_owner(self, conn: sqlite3.Connection, owner: dict[str, Any]) -> None:
        """An owner record as ``GET /crm/v3/owners`` returns it (``id`` digits, ``userId`` an int or None)."""
        conn.execute("INSERT OR REPLACE INTO owners VALUES (?, ?, ?, ?, ?)",
                     (int(owner["id"]), orjson.dumps(owner), int(bool(owner.get("archived"))),
                      (owner.get("email") or "").lower() or None, owner.get("userId")))
