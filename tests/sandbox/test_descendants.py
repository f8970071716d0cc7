"""Unsealed runs find what the command left running by the marker in its environment."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from typing import Any

import pytest

from telemetry_audit.sandbox.descendants import end_marked, linger_for_marked, marked_processes, wait_command_or_proxy

pytestmark = pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs /proc")


def _start(marker: str, seconds: float, *, ignore_sigterm: bool = False) -> subprocess.Popen[bytes]:
    env = {**os.environ, "TELEMETRY_AUDIT_RUN": marker}
    code = f"import time; time.sleep({seconds})"
    if ignore_sigterm:  # a detached sender that will not be asked to stop
        code = f"import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print(flush=True); {code}"
    child = subprocess.Popen([sys.executable, "-c", code], env=env, start_new_session=True,
                             stdout=subprocess.PIPE if ignore_sigterm else None)
    if ignore_sigterm:
        assert child.stdout is not None
        child.stdout.readline()  # its handler is in place
    return child


def test_marked_processes_are_found_and_others_are_not() -> None:
    marker = os.urandom(6).hex()
    child = _start(marker, 5)
    other = _start("another-run", 5)
    try:
        found = marked_processes(marker)
        assert list(found) == [child.pid] and found[child.pid].startswith("python")
    finally:
        for process in (child, other):
            process.kill()
            process.wait()


def test_linger_waits_for_a_marked_process_then_reports_it() -> None:
    marker = os.urandom(6).hex()
    child = _start(marker, 0.6)
    [item] = linger_for_marked(marker, 10)
    child.wait()
    assert item.pid == child.pid and item.outcome == "finished" and 0.3 <= item.seconds < 10


def test_linger_gives_up_and_leaves_it_running() -> None:
    marker = os.urandom(6).hex()
    child = _start(marker, 30)
    try:
        [item] = linger_for_marked(marker, 0.3)
        assert item.outcome == "left running" and child.poll() is None
    finally:
        child.kill()
        child.wait()


def test_nothing_marked_returns_at_once() -> None:
    assert linger_for_marked(os.urandom(6).hex(), 30) == []


def test_end_marked_kills_what_ignores_sigterm_and_leaves_the_rest() -> None:
    marker = os.urandom(6).hex()
    stubborn = _start(marker, 60, ignore_sigterm=True)
    other = _start("another-run", 60)
    try:
        ended = end_marked(marker)
        assert list(ended) == [stubborn.pid]
        assert stubborn.wait(30) == -9 and other.poll() is None
        assert marked_processes(marker) == {}
    finally:
        for process in (stubborn, other):
            process.kill()
            process.wait()


def test_linger_ends_marked_processes_once_the_proxy_is_gone() -> None:
    marker = os.urandom(6).hex()
    child = _start(marker, 60, ignore_sigterm=True)
    try:
        [item] = linger_for_marked(marker, 60, proxy_gone=lambda: True)
        assert (item.pid, item.outcome) == (child.pid, "ended")
        assert child.wait(30) == -9
    finally:
        child.kill()
        child.wait()


@pytest.mark.parametrize(("command_seconds", "proxy_seconds", "proxy_gone"), [
    (60, 0, True),  # the proxy dies first: the command is still running (the caller ends it)
    (0, 60, False),  # the command ends first, the proxy still runs
])
def test_wait_returns_on_whichever_ends_first(command_seconds: float, proxy_seconds: float,
                                              proxy_gone: bool) -> None:
    command = _start("command", command_seconds)
    proxy = _start("proxy", proxy_seconds)
    try:
        assert wait_command_or_proxy(command, proxy) is proxy_gone
        assert (command.poll() is None) is proxy_gone and (proxy.poll() is None) is not proxy_gone
    finally:
        for process in (command, proxy):
            process.kill()
            process.wait()


def test_wait_without_a_proxy_waits_for_the_command() -> None:
    command = _start("command", 0)
    assert wait_command_or_proxy(command, None) is False and command.returncode == 0


def _fake_process(proc: Any, pid: int, environ: bytes, cmdline: bytes, stat: str) -> None:
    directory = proc / str(pid)
    directory.mkdir()
    (directory / "environ").write_bytes(environ)
    (directory / "cmdline").write_bytes(cmdline)
    (directory / "stat").write_text(stat)


def test_a_process_caught_inside_exec_is_read_again(tmp_path: Any) -> None:
    """Found as a flaky test: `subprocess` returns once the kernel closed the child's old descriptors, which
    is before execve lays out the new program's environment; a scan right then read it empty and took a marked
    process for unmarked. Such a process (empty command line too) is read again until its environment is there."""
    marker = os.urandom(6).hex()
    _fake_process(tmp_path, 4242, b"", b"", "4242 (python3) R 1 4242 4242 0 -1 4194560 0 0")
    _fake_process(tmp_path, 4243, b"", b"env\0-i\0sleep\0", "4243 (sleep) S 1 4243 4243 0 -1 4194560 0 0")
    _fake_process(tmp_path, 4244, b"", b"", "4244 (kworker/0:1) I 2 0 0 0 -1 69238880 0 0")

    def exec_completes() -> None:
        time.sleep(0.01)
        (tmp_path / "4242" / "environ").write_bytes(f"HOME=/root\0TELEMETRY_AUDIT_RUN={marker}\0".encode())
        (tmp_path / "4242" / "cmdline").write_bytes(b"python3\0-c\0pass\0")

    writer = threading.Thread(target=exec_completes)
    writer.start()
    try:
        assert marked_processes(marker, proc=str(tmp_path)) == {4242: "python3"}
    finally:
        writer.join()


def test_truly_empty_environments_are_not_waited_for(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A kernel thread, a zombie and an `env -i` process read empty for good: one read each, no pause."""
    _fake_process(tmp_path, 10, b"", b"", "10 (kworker/0:1) I 2 0 0 0 -1 69238880 0 0")
    _fake_process(tmp_path, 11, b"", b"", "11 (defunct) Z 1 11 11 0 -1 4194564 0 0")
    _fake_process(tmp_path, 12, b"", b"env\0-i\0sleep\0", "12 (sleep) S 1 12 12 0 -1 4194560 0 0")
    pauses: list[float] = []
    monkeypatch.setattr(time, "sleep", pauses.append)
    assert marked_processes("x", proc=str(tmp_path)) == {}
    assert pauses == []


def test_a_signal_ends_the_wait_for_an_exit_and_its_handler_runs() -> None:
    """The wait for a process's exit also ends on a signal whose handler only sets a flag (the collector's Ctrl-C,
    `run` forwarding SIGTERM). A wait on the process alone is resumed by Python after the handler runs, and a
    signal landing just before it starts is seen only when it ends: the collector then ignored Ctrl-C (1 in 60
    starts under load). Here the child outlives the wait by far: the wait ended on the signal."""
    from telemetry_audit.sandbox.descendants import wait_for_exit_or_signal

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(20)"])
    received: list[int] = []
    previous = signal.signal(signal.SIGUSR1, lambda signum, frame: received.append(signum))
    sender = threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGUSR1))
    try:
        sender.start()
        wait_for_exit_or_signal([child])
        assert received == [signal.SIGUSR1] and child.poll() is None
    finally:
        sender.cancel()
        signal.signal(signal.SIGUSR1, previous)
        child.kill()
        child.wait()


def test_the_wait_ends_when_the_process_exits() -> None:
    from telemetry_audit.sandbox.descendants import wait_for_exit_or_signal

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    wait_for_exit_or_signal([child])
    assert child.wait() == 0
