"""The SQLite event store."""

from __future__ import annotations

import json
import sqlite3
import stat
import threading
from pathlib import Path

import pytest

from telemetry_audit.collectors.base import Event
from telemetry_audit.collectors.store import EventStore


def _event(name: str, tool: str = "sst", collector: str = "posthog") -> Event:
    return Event(collector=collector, tool=tool, name=name, distinct_id="d", properties={"k": [1, "x"]})


def test_add_filter_count_and_reset() -> None:
    with EventStore() as store:
        store.add([_event("a"), _event("b", tool="werf", collector="otlp")], good=True, request_meta={"path": "/x"})
        store.add([], good=False, reason="invalid JSON", decision={"action": "log"}, request_meta={"path": "/y"})

        assert store.counts() == {"total": 3, "good": 2, "bad": 1}
        assert [e.name for e in store.good(tool="sst")] == ["a"]
        assert [e.name for e in store.all(collector="otlp")] == ["b"]
        assert [e.name for e in store.all(event="b", tool="sst")] == []
        (bad,) = store.bad()
        assert (bad.name, bad.reason, bad.decision, bad.request_meta) == (
            None,
            "invalid JSON",
            {"action": "log"},
            {"path": "/y"},
        )
        assert store.counts(tool="werf") == {"total": 1, "good": 1, "bad": 0}
        assert store.all(limit=1)[0].properties == {"k": [1, "x"]}

        store.reset()
        assert store.counts() == {"total": 0, "good": 0, "bad": 0}


def test_a_good_request_without_events_records_nothing() -> None:
    with EventStore() as store:
        assert store.add([], good=True) == []
        assert store.counts()["total"] == 0


def test_survives_restart_and_is_private(tmp_path: Path) -> None:
    path = tmp_path / "events.sqlite"
    with EventStore(path) as store:
        store.add([_event("a")], good=True)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with EventStore(path) as store:
        assert [e.name for e in store.all()] == ["a"]
        assert store.all()[0].to_dict()["event"]["tool"] == "sst"


def test_concurrent_writers() -> None:
    with EventStore() as store:
        threads = [
            threading.Thread(target=lambda: [store.add([_event("x")], good=True) for _ in range(50)]) for _ in range(8)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert store.counts()["total"] == 400


def test_judged_events_each_keep_their_reason() -> None:
    with EventStore() as store:
        first = Event(collector="segment", tool="segment", name="a")
        second = Event(collector="segment", tool="segment", name="")
        store.add_judged([(first, "reason a"), (second, "reason b")], good=False, request_meta={"path": "/v1/batch"})
        rows = store.bad(collector="segment")
    assert [(r.name, r.reason, r.tool) for r in rows] == [("a", "reason a", "segment"), (None, "reason b", "segment")]


# --- absorbing another store's rows (a large request's, recorded in the proxy's worker process) ------------------


def _part(tmp_path: Path, names: list[str]) -> Path:
    path = tmp_path / "part.sqlite"
    with EventStore(path) as part:
        part.add([_event(n) for n in names], good=True, decision={"decision": "redact"}, request_meta={"path": "/b"})
        part.add([], good=False, reason="not an event", request_meta={"path": "/b"})
    return path


@pytest.mark.parametrize("chunk_rows", [1, 2, 3, 500])
def test_absorb_moves_every_row_in_order_after_the_rows_already_there(tmp_path: Path, chunk_rows: int) -> None:
    part = _part(tmp_path, ["e1", "e2", "e3", "e4"])
    with EventStore() as store:
        store.add([_event("before")], good=True)
        assert store.absorb(part, chunk_rows=chunk_rows) == 5
        rows = store.all()
    assert [r.name for r in rows] == ["before", "e1", "e2", "e3", "e4", None]
    assert [r.id for r in rows] == sorted(r.id for r in rows) and len({r.id for r in rows}) == 6
    assert rows[1].decision == {"decision": "redact"} and rows[1].request_meta == {"path": "/b"}
    assert (rows[-1].good, rows[-1].reason) == (False, "not an event")


def test_the_store_takes_other_rows_between_chunks(tmp_path: Path) -> None:
    part = _part(tmp_path, ["e1", "e2", "e3"])
    with EventStore() as store:
        chunks = store.absorbing(part, chunk_rows=2)
        assert next(chunks) == 2
        store.add([_event("meanwhile")], good=True)
        assert list(chunks) == [4]
        assert [r.name for r in store.all()] == ["e1", "e2", "meanwhile", "e3", None]


def test_two_absorbs_may_interleave_their_chunks(tmp_path: Path) -> None:
    """Two large requests finishing together: each copy attaches its own file under a name of its own."""
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    first, second = _part(tmp_path / "a", ["a1", "a2", "a3"]), _part(tmp_path / "b", ["b1", "b2", "b3"])
    with EventStore() as store:
        a, b = store.absorbing(first, chunk_rows=2), store.absorbing(second, chunk_rows=2)
        assert (next(a), next(b), next(a), next(b)) == (2, 2, 4, 4)
        assert list(a) == list(b) == []
        assert [r.name for r in store.all()] == ["a1", "a2", "b1", "b2", "a3", None, "b3", None]
        assert store.absorb(first) == 4  # every name was detached again


def test_absorbing_an_empty_store_moves_nothing(tmp_path: Path) -> None:
    EventStore(tmp_path / "empty.sqlite").close()
    with EventStore() as store:
        assert store.absorb(tmp_path / "empty.sqlite") == 0
        assert store.counts()["total"] == 0


@pytest.mark.parametrize("content", [b"not a database at all" * 100, None], ids=["garbage", "missing"])
def test_absorbing_what_is_not_a_store_raises_and_leaves_the_store_usable(tmp_path: Path,
                                                                          content: bytes | None) -> None:
    path = tmp_path / "bad.sqlite"
    if content is not None:
        path.write_bytes(content)
    with EventStore() as store:
        with pytest.raises(sqlite3.Error):
            store.absorb(path)
        store.add([_event("after")], good=True)  # detached again: the store goes on
        assert [r.name for r in store.all()] == ["after"]
        assert store.absorb(_part(tmp_path, ["e1"])) == 2


def test_ids_follow_insertion_order_one_row_or_many() -> None:
    with EventStore() as store:
        first = store.add([_event("a")], good=True)
        batch = store.add([_event("b"), _event("c")], good=True)
        bad = store.add([], good=False, reason="broken")
        assert [first, batch, bad] == [[1], [2, 3], [4]]
        assert [(e.id, e.name, e.good) for e in store.all()] == [(1, "a", True), (2, "b", True), (3, "c", True),
                                                                 (4, None, False)]


def test_a_row_that_cannot_be_stored_fails_and_leaves_nothing(tmp_path: Path) -> None:
    class Unstorable:
        def __str__(self) -> str:
            raise ValueError("no text form")

    with EventStore(tmp_path / "events.sqlite") as store:
        broken = Event(collector="segment", tool="segment", name="x", properties={"v": Unstorable()})
        for events in ([broken], [_event("fine"), broken]):
            with pytest.raises(ValueError, match="no text form"):
                store.add(events, good=True)
        assert store.counts()["total"] == 0


def test_a_row_survives_the_proxy_being_killed_right_after_it(tmp_path: Path) -> None:
    """Commits are not fsynced one by one (WAL, synchronous NORMAL), yet a killed process loses no row it stored."""
    import subprocess
    import sys

    path = tmp_path / "events.db"
    script = (
        "import os, sys\n"
        "from telemetry_audit.collectors.base import Event\n"
        "from telemetry_audit.collectors.store import EventStore\n"
        "store = EventStore(sys.argv[1])\n"
        "store.add([Event(collector='segment', tool='t', name='kept')], good=True)\n"
        "os.kill(os.getpid(), 9)\n"
    )
    result = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True, timeout=60)
    assert result.returncode == -9, result.stderr
    with EventStore(path) as store:
        assert [e.name for e in store.good()] == ["kept"]
        assert store._db.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL


# --- writing behind (the proxy's store in memory) ------------------------------------------------------------------


def _other_connection_names(path: Path) -> list[str]:
    with sqlite3.connect(path) as other:
        return [row[0] for row in other.execute("SELECT name FROM events ORDER BY id")]


def test_rows_written_behind_wait_until_flushed_and_are_then_as_if_written_at_once(tmp_path: Path) -> None:
    path = tmp_path / "behind.sqlite"
    with EventStore(path, write_behind=True) as store, EventStore(tmp_path / "direct.sqlite") as direct:
        for target in (store, direct):
            assert target.add([_event("a")], good=True, decision={"decision": "log"}, request_meta={"path": "/x"}) \
                == ([] if target is store else [1])
            target.add([_event("b"), _event("c")], good=True)
            target.add([], good=False, reason="broken")
        assert store.pending == 4 and _other_connection_names(path) == []  # not written yet
        store.flush()
        assert store.pending == 0 and _other_connection_names(path) == ["a", "b", "c", None]
        assert [e.to_dict() | {"received_at": 0} for e in store.all()] == \
            [e.to_dict() | {"received_at": 0} for e in direct.all()]


@pytest.mark.parametrize("read", [
    lambda s: s.all(), lambda s: s.good(), lambda s: s.bad(), lambda s: s.counts(), lambda s: s.close(),
], ids=["all", "good", "bad", "counts", "close"])
def test_every_read_and_closing_write_the_rows_held_first(tmp_path: Path, read: object) -> None:
    path = tmp_path / "behind.sqlite"
    store = EventStore(path, write_behind=True)
    store.add([_event("a")], good=True)
    store.add([], good=False, reason="broken")
    read(store)  # type: ignore[operator]
    assert store.pending == 0 and _other_connection_names(path) == ["a", None]
    store.close()


def test_a_full_write_behind_buffer_is_written_without_waiting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from telemetry_audit.collectors import store as store_module

    monkeypatch.setattr(store_module, "WRITE_BEHIND_ROWS", 3)
    path = tmp_path / "behind.sqlite"
    with EventStore(path, write_behind=True) as store:
        store.add([_event("a"), _event("b")], good=True)
        assert store.pending == 2 and _other_connection_names(path) == []
        store.add([_event("c")], good=True)
        assert store.pending == 0 and _other_connection_names(path) == ["a", "b", "c"]


def test_rows_held_come_before_absorbed_ones_and_reset_forgets_them(tmp_path: Path) -> None:
    part = _part(tmp_path, ["e1"])
    with EventStore(write_behind=True) as store:
        store.add([_event("before")], good=True)
        assert store.absorb(part) == 2
        assert [r.name for r in store.all()] == ["before", "e1", None]
        store.add([_event("forgotten")], good=True)
        store.reset()
        assert store.pending == 0 and store.counts()["total"] == 0


def test_rows_that_cannot_be_written_behind_are_dropped_with_an_error_saying_how_many(tmp_path: Path) -> None:
    with EventStore(write_behind=True) as store:
        store.add([_event("a"), _event("b")], good=True)
        store._db.execute("DROP TABLE events")  # the write fails, as on a full disk
        with pytest.raises(sqlite3.OperationalError, match="2 event rows were not stored"):
            store.flush()
        assert store.pending == 0


@pytest.mark.parametrize(("properties", "context", "columns"), [
    ({"plan": "free"}, {"ip": "1"}, ("@properties", "@context")),  # copied from the event as sent
    ({"plan": "free"}, {}, ("@properties", "{}")),
    ({"plan": "pro"}, {"ip": "2"}, ('{"plan":"pro"}', '{"ip":"2"}')),  # the emulator's own: kept as they are
    ({"email": "a@b"}, {"ip": "1"}, ("@traits", "@context")),
])
def test_a_store_written_behind_keeps_what_the_raw_event_holds_once(
        tmp_path: Path, properties: dict[str, str], context: dict[str, str], columns: tuple[str, str]) -> None:
    """Its rows are read by this store alone: properties and context equal to the raw event's are kept as a
    reference into it, and read back equal; a store other processes read keeps JSON in every column."""
    raw = {"properties": {"plan": "free"}, "context": {"ip": "1"}, "traits": {"email": "a@b"}}
    event = Event(collector="segment", tool="t", name="e", properties=properties, context=context, raw=raw)
    for write_behind in (True, False):
        path = tmp_path / f"behind-{write_behind}.sqlite"
        with EventStore(path, write_behind=write_behind) as store:
            store.add([event], good=True)
            (read,) = store.all()
            assert (read.properties, read.context, read.raw) == (properties, context, raw)
        with sqlite3.connect(path) as other:
            stored = other.execute("SELECT properties, context FROM events").fetchone()
        assert stored == (columns if write_behind else (json.dumps(properties, separators=(",", ":")),
                                                         json.dumps(context, separators=(",", ":"))))
