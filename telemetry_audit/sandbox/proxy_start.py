"""The sealed run's proxy, spawned by the supervisor before it imports anything else.

The proxy's own start-up (mitmproxy's imports) is the longest part of a sealed start, and it cannot begin before
the supervisor runs inside the new namespaces. So the supervisor starts under `python -S` and spawns the proxy
with `os.posix_spawn` from here, which imports nothing but `os`, `sys` and `time` (`subprocess` alone costs a
few milliseconds, `site` and the editable-install finder tens); the rest of the supervisor imports while the
proxy does. `StartedProxy` offers the few `subprocess.Popen` methods the supervisor uses.
"""

from __future__ import annotations

import os
import signal
import sys
import time

PROXY_ARGV = (sys.executable, "-P", "-m", "telemetry_audit.proxy.server")
"""The proxy server; its configuration arrives on standard input (see `telemetry_audit.proxy.server`, which
imports mitmproxy before it reads it)."""


class ProxyTimeout(Exception):
    """`StartedProxy.wait(timeout)` ran out (as `subprocess.TimeoutExpired`, without importing subprocess)."""


class StartedProxy:
    """A spawned proxy: its pid, the write end of its standard input, and its exit status once reaped."""

    def __init__(self, pid: int, stdin_fd: int, ready_fd: int = -1) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self._stdin_fd = stdin_fd
        self.ready_fd = ready_fd
        """The read end of its standard output, which carries its ready line once it listens (-1: none)."""

    def send_config(self, data: bytes) -> None:
        """Write its configuration and close its standard input (a proxy already gone is not an error here)."""
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(self._stdin_fd, view):]
        except BrokenPipeError:
            pass
        finally:
            self.close_stdin()

    def close_stdin(self) -> None:
        if self._stdin_fd >= 0:
            os.close(self._stdin_fd)
            self._stdin_fd = -1

    def poll(self) -> int | None:
        if self.returncode is None:
            self._reap(os.WNOHANG)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        """Its exit status; `ProxyTimeout` when it is still running after `timeout` seconds."""
        if timeout is None:
            while self.returncode is None:
                self._reap(0)
            return self.returncode
        if self.poll() is None and not self._exits_within(timeout):
            raise ProxyTimeout(f"the proxy still runs after {timeout:g} s")
        while self.returncode is None:  # it has exited (or is about to): reaped now
            self._reap(0)
        return self.returncode

    def _exits_within(self, timeout: float) -> bool:
        """Whether it exits within `timeout` seconds, noticed the moment it does (a pidfd; a 2 ms poll without).
        Not reaped yet (`poll` said so): the pid is still its own."""
        deadline = time.monotonic() + timeout
        exited = pid_exits_within(self.pid, timeout)
        if exited is not None:
            return exited
        while self.poll() is None:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.002)
        return True

    def send_signal(self, sig: int) -> None:
        if self.returncode is None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def _reap(self, options: int) -> None:
        try:
            pid, status = os.waitpid(self.pid, options)
        except ChildProcessError:  # reaped elsewhere (the supervisor collects every orphan): as Popen, 0
            self.returncode = 0
            return
        except InterruptedError:
            return
        if pid == self.pid:
            self.returncode = os.waitstatus_to_exitcode(status)  # -N for signal N, as Popen


def pid_exits_within(pid: int, timeout: float) -> bool | None:
    """Whether the process `pid` (a child not reaped yet, so the pid cannot name another process) exits within
    `timeout` seconds, noticed the moment it does through a pidfd; None where there is no pidfd (the caller then
    polls or waits its own way). It does not reap it."""
    try:
        pidfd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None
    import select  # only once a process is stopped: nothing of it on the way of a start

    try:
        return bool(select.select([pidfd], [], [], max(0.0, timeout))[0])
    finally:
        os.close(pidfd)


def spawn_proxy(stderr_path: str) -> StartedProxy | OSError:
    """The proxy server in its own session, its error output appended to `stderr_path`, its standard output (the
    ready line, then nothing: it points it at its error output) a pipe the supervisor waits on; the error when it
    cannot start (reported once the spec says where results go)."""
    stdin_read, stdin_write = os.pipe()
    ready_read, ready_write = os.pipe()
    try:
        pid = os.posix_spawn(PROXY_ARGV[0], list(PROXY_ARGV), os.environ, file_actions=[
            (os.POSIX_SPAWN_DUP2, stdin_read, 0),
            (os.POSIX_SPAWN_DUP2, ready_write, 1),
            (os.POSIX_SPAWN_OPEN, 2, stderr_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666),
        ], setsid=True, setsigdef=(signal.SIGPIPE, signal.SIGXFSZ))  # as Popen's restore_signals
    except OSError as e:
        os.close(stdin_write)
        os.close(ready_read)
        return e
    finally:
        os.close(stdin_read)
        os.close(ready_write)
    return StartedProxy(pid, stdin_write, ready_read)
