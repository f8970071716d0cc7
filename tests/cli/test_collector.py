"""`telemetry-audit collector` as a user runs it: a child process of its own, stopped with Ctrl-C."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

from telemetry_audit.cli import build_parser

READY = re.compile(r"telemetry-audit collector on (http://\S+) \(inspect: (http://\S+)/micro/all\)")


def cli_env(confdir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy") and not k.startswith("TELEMETRY")}
    return {**env, "TELEMETRY_AUDIT_HOME": str(confdir), **extra}


@contextmanager
def collector(confdir: Path, *args: str, **env: str) -> Iterator[tuple[subprocess.Popen[str], list[str]]]:
    """The command running until its ready lines are out; (process, lines so far). Interrupted on leaving."""
    process = subprocess.Popen([sys.executable, "-m", "telemetry_audit", "collector", *args], text=True,
                               stderr=subprocess.PIPE, stdout=subprocess.PIPE, env=cli_env(confdir, **env))
    assert process.stderr is not None
    lines: list[str] = []
    try:
        while not any(line.startswith("inspection API:") for line in lines):
            line = process.stderr.readline()
            if not line:
                raise AssertionError(f"the collector exited early: {''.join(lines)}")
            lines.append(line.rstrip("\n"))
        yield process, lines
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            process.wait(30)


@pytest.fixture(scope="module")
def confdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from telemetry_audit.proxy.ca import ensure_ca

    path = tmp_path_factory.mktemp("confdir")
    ensure_ca(str(path))
    return path


def test_it_prints_where_it_serves_and_the_token_and_stops_cleanly_on_ctrl_c(confdir: Path, tmp_path: Path) -> None:
    store = tmp_path / "events.sqlite"
    with collector(confdir, "--listen", "127.0.0.1:0", "--store", str(store)) as (process, lines):
        ready = READY.fullmatch(lines[0])
        assert ready is not None, lines
        url = ready.group(1)
        assert ready.group(2) == url and url.startswith("http://127.0.0.1:")
        token = lines[-1].rsplit(" ", 1)[1]
        assert lines[-1] == f"inspection API: this user, or header X-Telemetry-Audit-Token: {token}"
        assert len(token) >= 32 and not any(line.startswith("warning") for line in lines)
        answer = requests.post(f"{url}/v1/track", json={"type": "track", "userId": "u", "event": "e"}, timeout=10)
        assert answer.json() == {"success": True}
        process.send_signal(signal.SIGINT)
        assert process.wait(30) == 0
    # Stopped: the child flushed and closed the store, and left nothing of its own behind.
    from telemetry_audit.collectors.store import EventStore

    with EventStore(str(store)) as kept:
        assert [e.name for e in kept.good()] == ["e"]


def test_the_token_comes_from_the_environment_when_given(confdir: Path) -> None:
    with collector(confdir, "--listen", "127.0.0.1:0", TELEMETRY_AUDIT_TOKEN="tok-" + "x" * 28) as (_, lines):
        assert lines[-1].endswith("X-Telemetry-Audit-Token: tok-" + "x" * 28)


def test_every_interface_prints_the_real_address_and_a_warning(confdir: Path) -> None:
    with collector(confdir, "--listen", "0.0.0.0:0") as (_, lines):
        ready = READY.fullmatch(lines[0])
        assert ready is not None, lines
        port = ready.group(1).rsplit(":", 1)[1]
        assert ready.group(1) == f"http://0.0.0.0:{port}" and port != "0"
        assert ready.group(2) == f"http://127.0.0.1:{port}"  # where this machine reaches it
        assert any(line.startswith(f"warning: serving on 0.0.0.0:{port}, reachable from other machines")
                   for line in lines)
        assert requests.get(f"{ready.group(2)}/micro/all", timeout=10).status_code == 200


def test_the_listen_address_comes_from_the_environment(confdir: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with collector(confdir, TELEMETRY_AUDIT_COLLECTOR_LISTEN=f"127.0.0.1:{port}") as (_, lines):
        assert lines[0].startswith(f"telemetry-audit collector on http://127.0.0.1:{port} ")


def _run(confdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "telemetry_audit", "collector", *args], capture_output=True,
                          text=True, env=cli_env(confdir), timeout=120)


def test_a_port_in_use_is_a_usage_error(confdir: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = _run(confdir, "--listen", f"127.0.0.1:{port}")
    assert result.returncode == 2
    assert f"--listen 127.0.0.1:{port}" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize(("args", "says"), [
    (["--listen", "nope"], "expected HOST:PORT or PORT"),
    (["--listen", "127.0.0.1:70000"], "out of range"),
    (["--mode", "block"], "invalid choice"),
])
def test_bad_options_are_usage_errors(confdir: Path, args: list[str], says: str) -> None:
    result = _run(confdir, *args)
    assert result.returncode == 2 and says in result.stderr


def test_a_broken_policy_is_one_clear_error(confdir: Path, tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("rules: [ {id: x, forbid: nope} ]\n")
    result = _run(confdir, "--listen", "127.0.0.1:0", "--policy", str(policy))
    assert result.returncode == 2
    assert "cannot start the collector" in result.stderr and "invalid policy" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_store_that_is_not_sqlite_is_one_clear_error(confdir: Path, tmp_path: Path) -> None:
    store = tmp_path / "events.sqlite"
    store.write_bytes(b"this is not a database" * 100)
    result = _run(confdir, "--listen", "127.0.0.1:0", "--store", str(store))
    assert result.returncode == 2
    assert f"cannot use --store {store}" in result.stderr and "Traceback" not in result.stderr


def test_a_collector_that_dies_is_exit_3(confdir: Path) -> None:
    with collector(confdir, "--listen", "127.0.0.1:0") as (process, lines):
        ready = READY.fullmatch(lines[0])
        assert ready is not None
        port = int(ready.group(1).rsplit(":", 1)[1])
        child = _listener_pid(port)
        os.kill(child, signal.SIGKILL)
        assert process.wait(30) == 3
        assert process.stderr is not None and "the collector stopped on its own" in process.stderr.read()


def _listener_pid(port: int) -> int:
    """The proxy child listening on `port` (a child of the CLI process)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if b"telemetry_audit.proxy.server" in cmdline and _listens(int(pid), port):
                return int(pid)
        time.sleep(0.1)
    raise AssertionError(f"no proxy child listens on {port}")


def _listens(pid: int, port: int) -> bool:
    inodes = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    except OSError:
        return False
    with open("/proc/net/tcp", encoding="ascii") as table:
        for line in list(table)[1:]:
            parts = line.split()
            if parts[3] == "0A" and int(parts[1].rsplit(":", 1)[1], 16) == port and parts[9] in inodes:
                return True
    return False


def test_the_options_parse_without_starting_anything() -> None:
    parser, _ = build_parser()
    args = parser.parse_args(["collector", "--listen", "9191", "--store", "x.sqlite", "--mode", "enforce"])
    assert (args.listen, args.store, args.mode, args.policy) == (("127.0.0.1", 9191), "x.sqlite", "enforce", None)
    defaults = parser.parse_args(["collector"])
    assert (defaults.listen, defaults.mode) == (("127.0.0.1", 9090), "audit")
