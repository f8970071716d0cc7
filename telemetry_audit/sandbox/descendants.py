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
from telemetry_audit.sandbox.procfs import PF_KTHREAD, read_stat

_END_TIMEOUT = 5.0


_MID_EXEC_RETRIES = 50
_MID_EXEC_PAUSE = 0.001


def marked_processes(marker: str, *, variable: str = "TELEMETRY_AUDIT_RUN", proc: str = "/proc") -> dict[int, str]:
    """pid -> executable name of every readable process whose environment has `variable=marker`.

    A process caught inside `execve` reads an empty environment: the kernel closes the old program's descriptors
    (which ends a parent's wait for the exec, as `subprocess` waits) before it lays out the new one's. Such a
    process (its command line empty too, and neither a kernel thread nor a zombie) is read again for up to
    50 ms instead of being taken for unmarked.
    """
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
            environ = _read(f"{proc}/{entry}/environ")
            for _ in range(_MID_EXEC_RETRIES):
                if environ:
                    break
                if _read(f"{proc}/{entry}/cmdline"):
                    # Laid out: the kernel sets the arguments' bounds, then the environment's, a moment apart.
                    # Empty now, it is what `env -i` gives.
                    environ = _read(f"{proc}/{entry}/environ")
                    break
                stat = read_stat(entry, proc)
                if stat is None or stat.state in ("Z", "X") or stat.flags & PF_KTHREAD:
                    break  # gone, a zombie or a kernel thread: truly empty
                time.sleep(_MID_EXEC_PAUSE)
                environ = _read(f"{proc}/{entry}/environ")
        except OSError:
            continue
        if needle not in environ.split(b"\0"):
            continue
        stat = read_stat(entry, proc)
        if stat is None or stat.state == "Z":
            continue
        found[int(entry)] = stat.name
    return found


def _read(path: str) -> bytes:
    with open(path, "rb") as stream:
        return stream.read()


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
    A signal ends each wait too, so the caller's handler (forwarding SIGTERM to the command) runs at once.
    """
    processes = [command] if proxy is None else [command, proxy]
    while command.poll() is None:
        if proxy is not None and proxy.poll() is not None:
            return True
        wait_for_exit_or_signal(processes)
    return proxy is not None and proxy.poll() is not None


def wait_for_exit_or_signal(processes: list[subprocess.Popen[bytes]], timeout: float | None = None) -> None:
    """Block until one of `processes` exits (reaped only through its `Popen`), a signal arrives, or `timeout` passes.

    A plain blocking wait (`Popen.wait`, `select` on pidfds) misses a signal that lands after Python's last
    check for one and before the system call starts: its handler then runs only when the wait ends on its own.
    Found as `telemetry-audit collector` ignoring Ctrl-C, about 1 start in 60 under load (its SIGTERM to the
    audited command would be lost the same way in `run`). So the signal wakeup fd is waited on too: a signal at
    any moment writes to it. Handlers must not raise (set a flag): they run right after this returns.
    """
    pidfds = _pidfds(*(process.pid for process in processes))
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_read, False)
    os.set_blocking(wake_write, False)
    try:
        previous = signal.set_wakeup_fd(wake_write)
    except ValueError:  # not the main thread: signals are not handled here anyway
        previous = None
    try:
        if not pidfds:
            timeout = 0.05 if timeout is None else min(timeout, 0.05)  # no pidfd: poll the exits
        if any(process.poll() is not None for process in processes):
            return
        select.select([*pidfds, wake_read], [], [], timeout)
    finally:
        if previous is not None:
            signal.set_wakeup_fd(previous)
        for fd in (*pidfds, wake_read, wake_write):
            os.close(fd)


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
