"""The audit log: one JSON line per audited request, written before the request moves on.

Each record is written with a single `write(2)` on an unbuffered descriptor
opened with O_APPEND, so a crash or a kill of the proxy loses no record that
was already decided. Records carry masked previews and fingerprints only.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from typing import Any

from telemetry_audit.model import Decision, Request
from telemetry_audit.report.build import AuditedRequest, request_entry


class AuditLogError(OSError):
    """The audit log cannot be written: the proxy must stop rather than pass traffic unrecorded."""


def audit_record(item: AuditedRequest, *, mode: str, enforced: bool, answered_by: str = "",
                 with_payload: bool = False) -> dict[str, Any]:
    """The log record for one audited request (a report entry plus body facts); `with_payload` keeps its decoded,
    masked payload (`report.payload`), for telemetry no emulator understands."""
    record = request_entry(item, with_payload=with_payload)
    body = item.request.body
    record["record"] = "request"
    record["mode"] = mode
    record["enforced"] = enforced
    record["body"] = {"size": len(body), "sha256": hashlib.sha256(body).hexdigest()}
    if answered_by:
        record["answered_by"] = answered_by
    return record


_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str)
"""`json.dumps(record, separators=(",", ":"), ensure_ascii=False, default=str)` without an encoder per record."""


class AuditLog:
    """Appends JSON lines to a file (or discards them when no path is given)."""

    def __init__(self, path: str | None) -> None:
        self.path = path
        self._fd: int | None = None
        self._lock = threading.Lock()
        if path:
            try:
                self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            except OSError as e:
                raise AuditLogError(f"cannot open audit log {path}: {e.strerror or e}") from None

    def write(self, record: dict[str, Any]) -> None:
        if self._fd is None:
            return
        line = (_ENCODER.encode(record) + "\n").encode("utf-8")
        with self._lock:
            try:
                written = os.write(self._fd, line)
            except OSError as e:
                raise AuditLogError(f"cannot write audit log {self.path}: {e.strerror or e}") from None
            if written != len(line):
                raise AuditLogError(f"short write to audit log {self.path} (disk full?)")

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                try:
                    os.fsync(self._fd)
                except OSError:
                    pass
                os.close(self._fd)
                self._fd = None


def stats_record(requests: int, started: float, session: str = "") -> dict[str, Any]:
    """The closing record: how many requests the proxy saw in all (audited or not)."""
    record: dict[str, Any] = {"record": "stats", "requests": requests, "started": started, "ended": time.time()}
    if session:
        record["session"] = session
    return record


def read_log(path: str, session: str = "") -> tuple[list[dict[str, Any]], int]:
    """(request records, total requests seen) from an audit log; tolerates a torn last line.

    With `session`, only that session's records count (a log may be shared by several runs).
    """
    records: list[dict[str, Any]] = []
    statuses: dict[str, dict[str, Any]] = {}
    total = 0
    if not os.path.isfile(path):  # a device (/dev/full reads zeros forever) or nothing at all
        return records, 0
    try:
        with open(path, encoding="utf-8", errors="replace") as stream:
            for line in stream:
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if session and record.get("session") != session:
                    continue
                if record.get("record") == "request":
                    records.append(record)
                elif record.get("record") == "status":
                    statuses[str(record.get("id"))] = record
                elif record.get("record") == "stats":
                    total += int(record.get("requests", 0))
    except FileNotFoundError:
        pass
    for record in records:  # what upstream answered, logged when it answered
        status = statuses.get(str(record.get("id")))
        if status is not None:
            record.update({key: status[key] for key in ("status", "error") if key in status})
    return records, max(total, len(records))


__all__ = ["AuditLog", "AuditLogError", "audit_record", "read_log", "stats_record", "Decision", "Request"]
