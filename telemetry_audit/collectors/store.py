"""A SQLite record of every event the emulators received, good and bad.

Like Snowplow Micro's store, but on disk so a long offline run (or a crash)
does not lose what a tool sent. One connection behind a lock: writes are
small and SQLite serialises them anyway. The file holds payloads as sent
(tokens included), so it is created readable by its owner only.
"""

from __future__ import annotations

import itertools
import json
import os
import sqlite3
import threading
import time
from collections.abc import Generator, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from telemetry_audit.collectors.base import Event

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    received_at REAL NOT NULL,
    good INTEGER NOT NULL,
    reason TEXT,
    collector TEXT,
    tool TEXT,
    name TEXT,
    distinct_id TEXT,
    anonymous_id TEXT,
    timestamp TEXT,
    properties TEXT NOT NULL,
    context TEXT NOT NULL,
    raw TEXT NOT NULL,
    decision TEXT,
    request_meta TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_filters ON events (good, tool, name, collector);
"""
_INSERT = (
    "INSERT INTO events (received_at, good, reason, collector, tool, name, distinct_id, anonymous_id, timestamp,"
    " properties, context, raw, decision, request_meta) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_COLUMNS = (
    "id, received_at, good, reason, collector, tool, name, distinct_id, anonymous_id, timestamp,"
    " properties, context, raw, decision, request_meta"
)
ABSORB_CHUNK_ROWS = 500
"""Rows moved per transaction by `EventStore.absorbing` (two or three milliseconds of SQLite work)."""
_ABSORB_NAMES = itertools.count()
WRITE_BEHIND_ROWS = 256
"""Rows a write-behind store holds at most before it writes them (`EventStore.write_behind`)."""


@dataclass(frozen=True)
class StoredEvent:
    """One row of the store: an event (or a rejected request) and how it was judged."""

    id: int
    received_at: float
    good: bool
    reason: str | None
    collector: str | None
    tool: str | None
    name: str | None
    """None when the event (or the rejected request) has no name."""
    distinct_id: str | None
    anonymous_id: str | None
    timestamp: str | None
    properties: dict[str, Any] = field(default_factory=dict)
    context: dict[str, Any] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict)
    decision: dict[str, Any] | None = None
    request_meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "received_at": self.received_at,
            "good": self.good,
            "reason": self.reason,
            "event": {
                "collector": self.collector,
                "tool": self.tool,
                "name": self.name,
                "distinct_id": self.distinct_id,
                "anonymous_id": self.anonymous_id,
                "timestamp": self.timestamp,
                "properties": self.properties,
                "context": self.context,
                "raw": self.raw,
            },
            "decision": self.decision,
            "request": self.request_meta,
        }


_ENCODER = json.JSONEncoder(separators=(",", ":"), default=str)
"""`json.dumps(value, separators=(",", ":"), default=str)` without building an encoder per call (5 per row).
`default=str` keeps odd values (bytes from a decoder, datetimes) recordable rather than lost."""


def _dump(value: Any) -> str:
    return _ENCODER.encode(value)


_SAME_AS_RAW = "@"
"""A `properties` or `context` column holding `@key` (never JSON: that starts with `{`) means `raw[key]`."""
_RAW_KEYS = ("properties", "context", "traits")


def _dump_part(part: dict[str, Any], raw: dict[str, Any]) -> str:
    """`_dump(part)`, or `@key` when `part` equals `raw[key]` (most emulators copy both from the event as sent):
    the row then holds that text once, in `raw`. Only for a store nothing but `_select` reads (`write_behind`)."""
    if part:
        for key in _RAW_KEYS:
            if raw.get(key) == part:
                return _SAME_AS_RAW + key
    return _dump(part)


def _load_part(text: str, raw: dict[str, Any]) -> dict[str, Any]:
    """A `properties` or `context` column read back (`_dump_part`)."""
    if text.startswith(_SAME_AS_RAW):
        return dict(raw[text[1:]])
    loaded: dict[str, Any] = json.loads(text)
    return loaded


class EventStore:
    """Thread-safe event store; `path` is a file, or `":memory:"` for tests and throwaway runs."""

    def __init__(self, path: str | os.PathLike[str] = ":memory:", *, write_behind: bool = False) -> None:
        self.path = str(path)
        self.write_behind = write_behind
        """New rows wait in memory, encoded, and are inserted together in one transaction: by `flush()`, before
        anything reads or moves rows (every query, `absorbing`, `reset`), at `close()`, and once
        `WRITE_BEHIND_ROWS` wait. One insert per request costs a statement and its own transaction each (a fifth
        of the proxy's work on a small request, beside the audit). Only for a store no other process reads: rows
        not yet flushed are invisible to another connection and die with the process. The proxy uses it for a
        store in memory (which dies with the process anyway), never for a file (`--store`), whose rows are
        committed before the request is answered. Such a store also keeps an event's properties and context, where
        they equal the raw event's, as a reference into it (`_dump_part`): each is encoded once."""
        self._pending: list[tuple[Any, ...]] = []
        if self.path != ":memory:" and not os.path.exists(self.path):
            # Create it private before SQLite opens it: payloads carry tokens.
            os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        with self._lock:
            if self.path != ":memory:":
                self._db.execute("PRAGMA journal_mode=WAL")
                # In WAL mode, NORMAL syncs at checkpoints instead of on every commit: a committed row still
                # survives the proxy crashing or being killed (only an OS crash or power loss can take back the last
                # ones), and a request no longer waits for an fsync of its own row (about 1 ms each).
                self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            try:
                self._write_pending()
            finally:
                self._db.close()

    @property
    def pending(self) -> int:
        """Rows waiting to be written (`write_behind`)."""
        return len(self._pending)

    def flush(self) -> None:
        """Write the rows waiting (`write_behind`) in one transaction; if that fails they are dropped, not kept for
        a retry that would fail again (the error says how many)."""
        with self._lock:
            self._write_pending()

    def _write_pending(self) -> None:
        """`flush()` with the lock held."""
        if not self._pending:
            return
        rows, self._pending = self._pending, []
        if len(rows) == 1:
            self._db.execute(_INSERT, rows[0])
            return
        self._db.execute("BEGIN")
        try:
            self._db.executemany(_INSERT, rows)
            self._db.execute("COMMIT")
        except BaseException as e:
            self._db.execute("ROLLBACK")
            if isinstance(e, sqlite3.Error):
                raise sqlite3.OperationalError(f"{len(rows)} event rows were not stored: {e}") from e
            raise

    def __enter__(self) -> EventStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def add(
        self,
        events: Iterable[Event],
        *,
        good: bool,
        reason: str | None = None,
        decision: Mapping[str, Any] | None = None,
        request_meta: Mapping[str, Any] | None = None,
    ) -> list[int]:
        """Record `events` from one request; a bad request without events still gets one row."""
        return self.add_judged(((e, reason) for e in events), good=good, empty_reason=reason, decision=decision,
                               request_meta=request_meta)

    def add_judged(
        self,
        judged: Iterable[tuple[Event, str | None]],
        *,
        good: bool,
        empty_reason: str | None = None,
        decision: Mapping[str, Any] | None = None,
        request_meta: Mapping[str, Any] | None = None,
    ) -> list[int]:
        """Record (event, reason) pairs from one request in one transaction (a batch's rejected items).

        The new rows' ids; none when the store writes behind (`write_behind`: the rows have no id yet).
        """
        now = time.time()
        meta = _dump(dict(request_meta or {}))
        verdict = _dump(dict(decision)) if decision is not None else None
        part = _dump_part if self.write_behind else lambda value, raw: _dump(value)
        rows: list[tuple[Any, ...]] = [
            (
                now,
                int(good),
                event_reason,
                e.collector or None,
                e.tool or None,
                e.name or None,
                e.distinct_id,
                e.anonymous_id,
                e.timestamp,
                part(e.properties, e.raw),
                part(e.context, e.raw),
                _dump(e.raw),
                verdict,
                meta,
            )
            for e, event_reason in judged
        ]
        if not rows and not good:
            rows.append((now, 0, empty_reason, None, None, None, None, None, None, "{}", "{}", "{}", verdict, meta))
        ids: list[int] = []
        with self._lock:
            if self.write_behind:
                self._pending.extend(rows)
                if len(self._pending) >= WRITE_BEHIND_ROWS:
                    self._write_pending()
                return ids
            if len(rows) == 1:  # the usual case: one statement is its own transaction (autocommit)
                return [int(self._db.execute(_INSERT, rows[0]).lastrowid or 0)]
            self._db.execute("BEGIN")
            try:
                for row in rows:
                    ids.append(int(self._db.execute(_INSERT, row).lastrowid or 0))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return ids

    def absorb(self, path: str | os.PathLike[str], *, chunk_rows: int = ABSORB_CHUNK_ROWS) -> int:
        """Move every row of the store file at `path` into this store, in order; how many rows moved."""
        return max(self.absorbing(path, chunk_rows=chunk_rows), default=0)

    def absorbing(self, path: str | os.PathLike[str], *,
                  chunk_rows: int = ABSORB_CHUNK_ROWS) -> Generator[int, None, None]:
        """Move the rows of the store file at `path` into this store, a transaction per `chunk_rows` rows, in order;
        yields the rows moved so far after each one.

        A large request's rows are recorded elsewhere first (the proxy's worker process). The copy runs inside
        SQLite, and the caller decides what runs between two chunks: the proxy's event loop serves other flows
        there, so none waits for the whole batch (a thread copying in a loop would take the lock back before a
        waiting thread woke up).
        """
        columns = _COLUMNS.split(", ", 1)[1]
        schema = f"absorbed_{next(_ABSORB_NAMES)}"  # two absorbs may interleave their chunks on this connection
        with self._lock:
            self._write_pending()  # rows recorded before come first
            self._db.execute(f"ATTACH DATABASE ? AS {schema}", (os.fspath(path),))
        try:
            last = moved = 0
            while True:
                with self._lock:
                    self._db.execute("BEGIN")
                    try:
                        top, count = self._db.execute(
                            f"SELECT MAX(id), COUNT(*) FROM (SELECT id FROM {schema}.events WHERE id > ? ORDER BY id"
                            " LIMIT ?)", (last, chunk_rows)).fetchone()
                        if top is not None:
                            self._db.execute(
                                f"INSERT INTO main.events ({columns}) SELECT {columns} FROM {schema}.events"
                                " WHERE id > ? AND id <= ? ORDER BY id", (last, top))
                        self._db.execute("COMMIT")
                    except BaseException:
                        self._db.execute("ROLLBACK")
                        raise
                if top is None:
                    return
                last, moved = int(top), moved + int(count)
                yield moved
        finally:
            with self._lock:
                self._db.execute(f"DETACH DATABASE {schema}")

    def _select(
        self,
        good: bool | None,
        tool: str | None,
        event: str | None,
        collector: str | None,
        limit: int | None,
        offset: int = 0,
        newest_first: bool = False,
    ) -> list[StoredEvent]:
        where, args = self._where(good, tool, event, collector)
        sql = f"SELECT {_COLUMNS} FROM events{where} ORDER BY id{' DESC' if newest_first else ''}"
        if limit is not None or offset:
            sql += " LIMIT ? OFFSET ?"
            args += [-1 if limit is None else limit, offset]
        with self._lock:
            self._write_pending()
            rows = self._db.execute(sql, args).fetchall()
        events = []
        for r in rows:
            raw = json.loads(r[12])
            events.append(StoredEvent(
                id=r[0],
                received_at=r[1],
                good=bool(r[2]),
                reason=r[3],
                collector=r[4],
                tool=r[5],
                name=r[6],
                distinct_id=r[7],
                anonymous_id=r[8],
                timestamp=r[9],
                properties=_load_part(r[10], raw),
                context=_load_part(r[11], raw),
                raw=raw,
                decision=json.loads(r[13]) if r[13] is not None else None,
                request_meta=json.loads(r[14]),
            ))
        return events

    @staticmethod
    def _where(good: bool | None, tool: str | None, event: str | None, collector: str | None) -> tuple[str, list[Any]]:
        clauses: list[str] = []
        args: list[Any] = []
        for column, value in (("good", None if good is None else int(good)), ("tool", tool), ("name", event)):
            if value is not None:
                clauses.append(f"{column} = ?")
                args.append(value)
        if collector is not None:
            clauses.append("collector = ?")
            args.append(collector)
        return (" WHERE " + " AND ".join(clauses) if clauses else ""), args

    def all(
        self,
        *,
        tool: str | None = None,
        event: str | None = None,
        collector: str | None = None,
        limit: int | None = None,
        offset: int = 0,
        newest_first: bool = False,
    ) -> list[StoredEvent]:
        """Every record, oldest first (or newest first), optionally filtered and paged."""
        return self._select(None, tool, event, collector, limit, offset, newest_first)

    def good(
        self,
        *,
        tool: str | None = None,
        event: str | None = None,
        collector: str | None = None,
        limit: int | None = None,
        offset: int = 0,
        newest_first: bool = False,
    ) -> list[StoredEvent]:
        """Events the emulated collector accepted."""
        return self._select(True, tool, event, collector, limit, offset, newest_first)

    def bad(
        self,
        *,
        tool: str | None = None,
        event: str | None = None,
        collector: str | None = None,
        limit: int | None = None,
        offset: int = 0,
        newest_first: bool = False,
    ) -> list[StoredEvent]:
        """Requests (or parts) that did not fit their protocol, with the reason."""
        return self._select(False, tool, event, collector, limit, offset, newest_first)

    def counts(
        self, *, tool: str | None = None, event: str | None = None, collector: str | None = None
    ) -> dict[str, int]:
        """`{"total", "good", "bad"}`, with the same filters as `all()`."""
        where, args = self._where(None, tool, event, collector)
        with self._lock:
            self._write_pending()
            total, good = self._db.execute(
                f"SELECT COUNT(*), COALESCE(SUM(good), 0) FROM events{where}", args
            ).fetchone()
        return {"total": int(total), "good": int(good), "bad": int(total) - int(good)}

    def reset(self) -> None:
        """Forget everything (Snowplow Micro's `/micro/reset`)."""
        with self._lock:
            self._pending.clear()
            self._db.execute("DELETE FROM events")
