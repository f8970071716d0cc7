"""A run whose proxy dies while the command runs ends the command and everything it started, at once.

Sealed and unsealed alike: the command holds an established keep-alive connection through the proxy and waits
for an answer when the proxy dies (it is killed, or its audit log fills up). Without the fail-closed end the
command waits until its own timeout (the kernel keeps a sealed connection's packets for a tun nobody reads), and a
detached grandchild that ignores SIGTERM goes on sending. Every request goes to a server of the test's own on
127.0.0.1, forwarded by the proxy (`--online --proxy-loopback`); it must receive nothing the proxy did not pass.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.sandbox.sealing import cli_env

GITHUB_TOKEN = "ghp_" + "Z9y8X7w6V5u4T3s2R1q0P9o8N7m6L5k4J3i2"
HANG = 90.0
"""Longer than a prompt end can take, shorter than the clients' own timeouts (300 s): a run still going then hangs."""

GRANDCHILD = f"""
import os, signal, sys, time, requests
signal.signal(signal.SIGTERM, signal.SIG_IGN)
open(os.path.join(sys.argv[1], "grandchild-ready"), "w").close()
session = requests.Session()
while True:  # a detached sender that never gives up: every attempt carries the secret
    try:
        session.post(f"http://127.0.0.1:{{sys.argv[2]}}/grandchild", json={{"t": "{GITHUB_TOKEN}"}}, timeout=300)
    except requests.RequestException:
        pass
    time.sleep(0.2)
"""

CLIENT = f"""
import os, subprocess, sys, time, requests
state, port, fill = sys.argv[1], sys.argv[2], sys.argv[3]
subprocess.Popen([sys.executable, "-c", {GRANDCHILD!r}, state, port], start_new_session=True,
                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
while not os.path.exists(os.path.join(state, "grandchild-ready")):
    time.sleep(0.05)
session = requests.Session()  # one keep-alive connection through the proxy
url = f"http://127.0.0.1:{{port}}"
print(session.post(url + "/first", json={{"clean": True}}, timeout=300).status_code, flush=True)
if fill:  # the audit log's file system is full from now on
    fd = os.open(os.path.join(fill, "filler"), os.O_WRONLY | os.O_CREAT)
    try:
        while os.write(fd, bytes(4096)):
            pass
    except OSError:
        pass
    os.close(fd)
try:  # on the same connection: the proxy dies (killed, or its log write fails) while this waits for an answer
    # (a long path: its record cannot fit in what is left of the log's last page)
    session.post(url + "/second?pad=" + "x" * 6000, json={{"clean": "still"}}, timeout=300)
except requests.RequestException:
    pass
while True:  # a persistent sender: it tries again and again, with the secret
    try:
        session.post(url + "/third", json={{"t": "{GITHUB_TOKEN}"}}, timeout=300)
    except requests.RequestException:
        pass
    time.sleep(0.2)
"""


@dataclass
class Server:
    """The destination on 127.0.0.1: what reached it, and a gate that holds its answer to `/second`."""

    port: int
    received: list[tuple[str, bytes]] = field(default_factory=list)
    second_arrived: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)


def _handler(server: Server) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            server.received.append((self.path, body))
            if self.path.startswith("/second"):
                server.second_arrived.set()
                server.release.wait(HANG * 2)
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture
def destination() -> Iterator[Server]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(Server(0)))
    server = Server(int(httpd.server_address[1]))
    httpd.RequestHandlerClass = _handler(server)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield server
    finally:
        server.release.set()
        httpd.shutdown()
        httpd.server_close()


def _tagged(tag: str) -> list[int]:
    """Processes whose environment carries `TEST_RUN_TAG=tag` (the command and everything it started)."""
    needle = f"TEST_RUN_TAG={tag}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            environ = Path(f"/proc/{entry}/environ").read_bytes()
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if needle in environ.split(b"\0") and state != "Z":
            found.append(int(entry))
    return found


def _proxies_under(root: int) -> list[int]:
    """The proxy server processes among `root`'s descendants."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                parents[int(entry)] = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    found = []
    for pid in parents:
        ancestor = parents.get(pid, 0)
        while ancestor > 1 and ancestor != root:
            ancestor = parents.get(ancestor, 0)
        if ancestor != root:
            continue
        try:
            if b"telemetry_audit.proxy.server" in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(pid)
        except OSError:
            continue
    return found


def _wait_for(condition: Any, what: str, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + HANG
    while not condition():
        if process.poll() is not None:
            pytest.fail(f"the run ended before {what}: {process.communicate()}")
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not happen")
        time.sleep(0.02)


def _start(seal: str, home: Path, server: Server, tag: str, fill: str = "", log: str = "",
           wrap: list[str] | None = None) -> subprocess.Popen[str]:
    state = home / "state"
    state.mkdir()
    argv = [*(wrap or []), sys.executable, "-m", "telemetry_audit", "run", "--seal", seal, "--online",
            "--proxy-loopback", "--audit-all", "--log", log or str(home / "audit.jsonl"), "--linger", "30", "--",
            sys.executable, "-c", CLIENT, str(state), str(server.port), fill]
    return subprocess.Popen(argv, cwd=home, env=cli_env(home, {"TEST_RUN_TAG": tag}), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def _finish(process: subprocess.Popen[str], tag: str) -> tuple[str, str]:
    try:
        stdout, stderr = process.communicate(timeout=HANG)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        for pid in _tagged(tag):
            os.kill(pid, signal.SIGKILL)
        pytest.fail(f"the run still ran {HANG:g} s after its proxy died: {process.communicate()}")
    return stdout, stderr


@pytest.fixture(params=["on", "off"])
def seal(request: pytest.FixtureRequest) -> str:
    if request.param == "on":
        request.getfixturevalue("sealable")
    return str(request.param)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "home"
    path.mkdir()
    return path


def test_a_killed_proxy_ends_the_command_and_its_detached_grandchild_at_once(seal: str, home: Path,
                                                                             destination: Server) -> None:
    tag = uuid.uuid4().hex
    process = _start(seal, home, destination, tag)
    _wait_for(destination.second_arrived.is_set, "the second request reached the server", process)
    [proxy] = _proxies_under(process.pid)
    os.kill(proxy, signal.SIGKILL)  # a crash, while the command waits for its answer on an established connection
    stdout, stderr = _finish(process, tag)
    assert process.returncode == 3, stderr
    assert stdout == "200\n"
    assert "the auditing proxy failed (exit status -9)" in stderr, stderr
    assert "the command and everything it started were ended" in stderr
    assert _tagged(tag) == []  # the command, and the grandchild that ignored SIGTERM in its own session
    assert [path.split("?")[0] for path, _ in destination.received] == ["/first", "/second"]
    assert not any(GITHUB_TOKEN.encode() in body for _, body in destination.received)


@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare (util-linux)")
def test_an_audit_log_that_fills_up_mid_connection_ends_the_run_with_exit_3(seal: str, home: Path,
                                                                             destination: Server) -> None:
    # The log lives on a small tmpfs of the run's own (a user + mount namespace around the CLI); the command
    # fills it after its first answer, so the proxy's next log write fails with ENOSPC.
    logs = home / "logs"
    logs.mkdir()
    os.chmod(logs, 0o777)
    wrap = ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c",
            'mount -t tmpfs -o size=1m,mode=1777 tmpfs "$0" && exec "$@"', str(logs)]
    tag = uuid.uuid4().hex
    process = _start(seal, home, destination, tag, fill=str(logs), log=str(logs / "audit.jsonl"), wrap=wrap)
    stdout, stderr = _finish(process, tag)
    if "cannot seal the run" in stderr or "Operation not permitted" in stderr:
        pytest.skip(f"a run inside a user namespace cannot seal here: {stderr.strip()[-300:]}")
    assert process.returncode == 3, stderr
    assert stdout == "200\n"
    assert "the audit log could not be written" in stderr and "audit.jsonl" in stderr, stderr
    assert "the command and everything it started were ended" in stderr, stderr
    assert _tagged(tag) == []
    # Nothing unrecorded passed: not the clean second request, nor any with the secret.
    assert [path for path, _ in destination.received] == ["/first"]


def test_the_report_of_a_run_whose_proxy_died_says_so(seal: str, home: Path, destination: Server) -> None:
    tag = uuid.uuid4().hex
    report = home / "report.json"
    state = home / "state"
    state.mkdir()
    argv = [sys.executable, "-m", "telemetry_audit", "run", "--seal", seal, "--online", "--proxy-loopback",
            "--report", str(report), "--", sys.executable, "-c", CLIENT, str(state), str(destination.port), ""]
    process = subprocess.Popen(argv, cwd=home, env=cli_env(home, {"TEST_RUN_TAG": tag}), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
    _wait_for(destination.second_arrived.is_set, "the second request reached the server", process)
    [proxy] = _proxies_under(process.pid)
    os.kill(proxy, signal.SIGTERM)  # it stops cleanly (status 0) while the command runs: still a failure
    _, stderr = _finish(process, tag)
    assert process.returncode == 3, stderr
    assert "the auditing proxy stopped on its own" in stderr
    data = json.loads(report.read_text())
    assert data["capture"]["lingering"] == []
    assert data["command"]["exit_code"] == 128 + signal.SIGKILL
