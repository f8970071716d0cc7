"""Unsealed runs: find the audited command's descendants by the run marker in their environment (Linux /proc).

Without a PID namespace a detached child (double fork, setsid) leaves the process tree, but it keeps the
environment it inherited: `TELEMETRY_AUDIT_RUN=<token>` names it. Only the user's own processes can be read, which
are the only ones the command could have started. Elsewhere (no /proc) nothing is found.
"""

from __future__ import annotations

import os
import time

from telemetry_audit.sandbox.launcher import LingeringProcess


def marked_processes(marker: str, *, variable: str = "TELEMETRY_AUDIT_RUN", proc: str = "/proc") -> dict[int, str]:
    """pid -> executable name of every readable process whose environment has `variable=marker`."""
    needle = f"{variable}={marker}".encode()
    found: dict[int, str] = {}
    try:
        entries = os.listdir(proc)
    except OSError:
        return found
    own = os.getpid()
    for entry in entries:
        if not entry.isdigit() or int(entry) == own:
            continue
        try:
            with open(f"{proc}/{entry}/environ", "rb") as stream:
                environ = stream.read()
            if needle not in environ.split(b"\0"):
                continue
            with open(f"{proc}/{entry}/stat", encoding="utf-8", errors="replace") as stream:
                stat = stream.read()
        except OSError:
            continue
        if stat[stat.rfind(")") + 2 :].startswith("Z"):
            continue
        found[int(entry)] = stat[stat.find("(") + 1 : stat.rfind(")")]
    return found


def linger_for_marked(marker: str, linger: float, *, poll: float = 0.1) -> list[LingeringProcess]:
    """Wait up to `linger` seconds while marked processes run; report each one seen (still running ones are left
    alone)."""
    started = time.monotonic()
    seen: dict[int, tuple[str, float | None]] = {}
    while True:
        alive = marked_processes(marker)
        now = time.monotonic()
        for pid, name in alive.items():
            seen.setdefault(pid, (name, None))
        for pid, (name, gone) in list(seen.items()):
            if gone is None and pid not in alive:
                seen[pid] = (name, now)
        if not alive or now - started >= linger:
            break
        time.sleep(poll)
    end = time.monotonic()
    return [LingeringProcess(name, pid, round((gone or end) - started, 2),
                              "finished" if gone is not None else "left running")
            for pid, (name, gone) in sorted(seen.items())]
