"""Unsealed runs find what the command left running by the marker in its environment."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from telemetry_audit.sandbox.descendants import linger_for_marked, marked_processes

pytestmark = pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs /proc")


def _start(marker: str, seconds: float) -> subprocess.Popen[bytes]:
    env = {**os.environ, "TELEMETRY_AUDIT_RUN": marker}
    return subprocess.Popen([sys.executable, "-c", f"import time; time.sleep({seconds})"], env=env,
                            start_new_session=True)


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
