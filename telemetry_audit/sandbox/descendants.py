"""Unsealed runs: find the audited command's descendants by the run marker in their environment (Linux /proc).

Without a PID namespace a detached child (double fork, setsid) leaves the process tree, but it keeps the
environment it inherited: `TELEMETRY_AUDIT_RUN=<token>` names it. Only the user's own processes can be read, which
are the only ones the command could have started. Elsewhere (no /proc) nothing is found.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import time
from collections.abc import Callable

from telemetry_audit.sandbox.launcher import LingeringProcess

_END_TIMEOUT = 5.0


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


def linger_for_marked(marker: str, linger: float, *, poll: float = 0.1,
                      proxy_gone: Callable[[], bool] | None = None) -> list[LingeringProcess]:
    """Wait up to `linger` seconds while marked processes run; report each one seen (still running ones are left
    alone). When `proxy_gone()` turns true meanwhile, the marked processes are ended at once (`end_marked`)."""
    started = time.monotonic()
    seen: dict[int, tuple[str, float | None]] = {}
    ended: set[int] = set()
    while True:
        alive = marked_processes(marker)
        now = time.monotonic()
        for pid, name in alive.items():
            seen.setdefault(pid, (name, None))
        for pid, (name, gone) in list(seen.items()):
            if gone is None and pid not in alive:
                seen[pid] = (name, now)
        if alive and proxy_gone is not None and proxy_gone():
            ended = set(end_marked(marker)) | set(alive)
            break
        if not alive or now - started >= linger:
            break
        time.sleep(poll)
    end = time.monotonic()
    return [LingeringProcess(name, pid, round((gone or end) - started, 2),
                              "ended" if pid in ended else "finished" if gone is not None else "left running")
            for pid, (name, gone) in sorted(seen.items())]


def end_marked(marker: str, *, timeout: float = _END_TIMEOUT) -> dict[int, str]:
    """SIGKILL every marked process, again until none is left (one may be forking meanwhile) or `timeout` runs
    out; pid -> name of each one signalled. Used when the proxy died: nothing the command started may go on
    unaudited, and a detached process (setsid, a SIGTERM handler) cannot refuse SIGKILL."""
    ended: dict[int, str] = {}
    deadline = time.monotonic() + timeout
    while True:
        alive = marked_processes(marker)
        if not alive or time.monotonic() >= deadline:
            return ended
        for pid, name in alive.items():
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                continue
            ended.setdefault(pid, name)
        time.sleep(0.01)


def wait_command_or_proxy(command: subprocess.Popen[bytes], proxy: subprocess.Popen[bytes] | None) -> bool:
    """Block until `command` exits or `proxy` does, whichever first; whether the proxy is gone by then.

    Both are waited for at once (a pidfd each on Linux, so neither exit is noticed late; elsewhere a short poll),
    because a proxy that dies while the command runs must end the command now, not when it exits on its own.
    """
    if proxy is None:
        command.wait()
        return False
    pidfds = _pidfds(command.pid, proxy.pid)
    try:
        while command.poll() is None:
            if proxy.poll() is not None:
                return True
            if pidfds:
                select.select(pidfds, [], [])
            else:
                try:
                    command.wait(0.05)
                except subprocess.TimeoutExpired:
                    pass
    finally:
        for fd in pidfds:
            os.close(fd)
    return proxy.poll() is not None


def _pidfds(*pids: int) -> list[int]:
    """A pidfd per pid (readable once that process exits), or [] where the kernel or Python has none."""
    opened: list[int] = []
    try:
        for pid in pids:
            opened.append(os.pidfd_open(pid))
    except (AttributeError, OSError):
        for fd in opened:
            os.close(fd)
        return []
    return opened
