"""Every channel through a real proxy on 127.0.0.1: raw TCP in a tunnel, trailers, other traffic, TLS failures,
large bodies audited off the event loop.

A local catcher stands in for "upstream": it records every byte that reaches it, so a test can say what got
through. A small policy marks 127.0.0.1 as a telemetry host (the catcher's address), so online traffic to it is
audited like traffic to a real collector. No test sends anything beyond 127.0.0.1.
"""

from __future__ import annotations

import gzip
import json
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from telemetry_audit.collectors.store import EventStore
from telemetry_audit.proxy.settings import ProxySettings
from telemetry_audit.session import ProxySession

GITHUB_TOKEN = "ghp_" + "C4t8R2w6Q1z5Y9x3V7b0N4m8L2k6J1h5G9f3"


class Catcher:
    """A TCP server on 127.0.0.1 that keeps every byte it receives and answers HTTP requests with 200."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.received = bytearray()
        self.connections = 0
        self._lock = threading.Lock()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        conn.settimeout(10)
        with conn:
            while True:
                try:
                    data = conn.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                with self._lock:
                    self.received += data
                if data.startswith((b"GET ", b"POST ")):
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
                    return

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def catcher() -> Iterator[Catcher]:
    server = Catcher()
    yield server
    server.close()


@pytest.fixture(scope="module")
def confdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("confdir")


@pytest.fixture(scope="module")
def loopback_policy(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("policy") / "loopback-is-telemetry.yaml"
    path.write_text("version: 1\nextends: [default]\nsettings:\n  telemetry_hosts: ['127.0.0.1', 'localhost']\n"
                    "rules: []\n")
    return str(path)


def session(tmp_path: Path, confdir: Path, **settings: Any) -> ProxySession:
    return ProxySession(ProxySettings(**settings), confdir=str(confdir), workdir=str(tmp_path), audited_env={})


def records(proxy: ProxySession) -> list[dict[str, Any]]:
    return proxy.records()[0]


def raw_exchange(proxy: ProxySession, payload: bytes, *, wait: float = 3.0) -> bytes:
    """Send `payload` on a fresh connection to the proxy; what came back before it closed or went quiet."""
    with socket.create_connection((proxy.host, proxy.port), timeout=wait) as conn:
        conn.sendall(payload)
        answer = bytearray()
        try:
            while chunk := conn.recv(65536):
                answer += chunk
        except TimeoutError:
            pass
    return bytes(answer)


def tunnel(proxy: ProxySession, target: str, payload: bytes, wait: float = 3.0) -> tuple[bytes, bytes]:
    """CONNECT `target`, then send `payload` (not HTTP, not TLS) inside the tunnel."""
    with socket.create_connection((proxy.host, proxy.port), timeout=wait) as conn:
        conn.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
        head = conn.recv(4096)
        conn.sendall(payload)
        answer = bytearray()
        try:
            while chunk := conn.recv(65536):
                answer += chunk
        except (TimeoutError, ConnectionResetError):
            pass
    return head, bytes(answer)


# --- raw TCP inside a CONNECT tunnel ----------------------------------------------------------------------------


def test_offline_raw_tcp_in_a_tunnel_reaches_nothing_and_is_recorded(tmp_path: Path, confdir: Path,
                                                                      catcher: Catcher) -> None:
    with session(tmp_path, confdir) as proxy:
        head, _ = tunnel(proxy, f"127.0.0.1:{catcher.port}", b"\r\n" + GITHUB_TOKEN.encode() + b"\r\n")
        time.sleep(0.5)
        seen = records(proxy)
    assert head.startswith(b"HTTP/1.1 200")  # the tunnel is granted (lazily), then nothing goes upstream
    assert catcher.connections == 0 and GITHUB_TOKEN.encode() not in catcher.received
    [record] = [r for r in seen if r.get("channel") == "tcp"]
    assert record["telemetry"] is False and record["answered_by"] == "refused offline"
    assert record["port"] == catcher.port


def test_online_raw_tcp_to_an_audited_host_is_scanned_and_blocked(tmp_path: Path, confdir: Path, catcher: Catcher,
                                                                  loopback_policy: str) -> None:
    with session(tmp_path, confdir, offline=False, policy=(loopback_policy,)) as proxy:
        tunnel(proxy, f"127.0.0.1:{catcher.port}", b"\r\nhello " + GITHUB_TOKEN.encode() + b"\r\n")
        time.sleep(0.5)
        seen = records(proxy)
    assert GITHUB_TOKEN.encode() not in catcher.received
    blocked = [r for r in seen if r.get("channel") == "tcp" and r.get("telemetry")]
    assert blocked and blocked[0]["decision"] == "block"
    assert any(f["kind"] == "secret" for f in blocked[0]["findings"])
    assert GITHUB_TOKEN not in Path(proxy.log_path).read_text()


def test_online_raw_tcp_without_secrets_passes_and_is_recorded(tmp_path: Path, confdir: Path, catcher: Catcher,
                                                               loopback_policy: str) -> None:
    with session(tmp_path, confdir, offline=False, policy=(loopback_policy,)) as proxy:
        tunnel(proxy, f"127.0.0.1:{catcher.port}", b"\r\nplain hello\r\n", wait=1.5)
        time.sleep(0.5)
        seen = records(proxy)
    assert b"plain hello" in catcher.received
    assert [r["channel"] for r in seen if r.get("channel") == "tcp"]


# --- trailers, other traffic ------------------------------------------------------------------------------------


def test_chunked_request_with_a_secret_in_a_trailer_is_answered_and_blocked(tmp_path: Path, confdir: Path) -> None:
    body = json.dumps({"event": "x"}).encode()
    request = (b"POST http://api.segment.io/v1/track HTTP/1.1\r\nHost: api.segment.io\r\n"
               b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\nTrailer: X-Token\r\n\r\n"
               + f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\nX-Token: " + GITHUB_TOKEN.encode()
               + b"\r\n\r\n")
    with session(tmp_path, confdir) as proxy:
        answer = raw_exchange(proxy, request)
        seen = records(proxy)
    assert answer.startswith(b"HTTP/1.1 200")
    [record] = seen
    assert record["decision"] == "block"
    assert any(f["field"].startswith("header.trailer:x-token") for f in record["findings"])
    assert GITHUB_TOKEN not in Path(proxy.log_path).read_text()


def test_every_request_is_recorded_and_other_traffic_is_refused_offline(tmp_path: Path, confdir: Path) -> None:
    with session(tmp_path, confdir) as proxy:
        answer = raw_exchange(proxy, b"GET http://registry.example.test/pkg/" + GITHUB_TOKEN.encode()
                              + b"?q=1 HTTP/1.1\r\nHost: registry.example.test\r\nConnection: close\r\n\r\n")
        report = proxy.report(_policy())
    assert answer.startswith(b"HTTP/1.1 502")
    [other] = report["other_traffic"]
    assert other["host"] == "registry.example.test" and other["answered_by"] == "refused offline"
    assert other["status"] == 502 and GITHUB_TOKEN not in json.dumps(report)  # the path is masked
    assert report["summary"]["other"] == 1 and report["summary"]["telemetry"] == 0


def test_upstream_status_is_recorded_for_traffic_that_passes(tmp_path: Path, confdir: Path,
                                                             catcher: Catcher) -> None:
    with session(tmp_path, confdir, offline=False) as proxy:
        raw_exchange(proxy, f"GET http://127.0.0.1:{catcher.port}/x HTTP/1.1\r\nHost: 127.0.0.1:{catcher.port}\r\n"
                     "Connection: close\r\n\r\n".encode())
        time.sleep(0.3)
        [record] = records(proxy)
    assert record["telemetry"] is False and record["answered_by"] == "upstream" and record["status"] == 200


@pytest.mark.skipif(subprocess.run(["which", "curl"], capture_output=True).returncode != 0, reason="no curl")
def test_a_client_that_rejects_our_certificate_is_recorded_with_the_reason(tmp_path: Path, confdir: Path) -> None:
    with session(tmp_path, confdir) as proxy:
        result = subprocess.run(["curl", "-sS", "--proxy", proxy.url, "--cacert", "/dev/null", "--max-time", "20",
                                 "https://api.segment.io/v1/track", "-d", "{}"], capture_output=True, text=True,
                                env={"PATH": "/usr/bin:/bin"})
        time.sleep(0.5)
        seen = records(proxy)
    assert result.returncode != 0
    [failure] = [r for r in seen if r.get("channel") == "tls"]
    assert failure["host"] == "api.segment.io" and failure["telemetry_host"] is True
    assert failure["answered_by"] == "TLS handshake failed" and failure["error"]


# --- large bodies never stall other flows -----------------------------------------------------------------------


def test_small_requests_are_answered_while_a_large_body_is_audited(tmp_path: Path, confdir: Path) -> None:
    events = [{"event": "cli.run", "distinct_id": f"d{i}",
               "properties": {"cwd": f"/home/alice/project-{i}", "email": f"u{i}@example.com"}}
              for i in range(20_000)]
    large = gzip.compress(json.dumps({"api_key": "phc_x", "batch": events}).encode())
    store_path = tmp_path / "events.sqlite"
    with session(tmp_path, confdir, store=str(store_path)) as proxy:
        answers: list[int] = []

        def send_large() -> None:
            answers.append(_post(proxy, "us.i.posthog.com", "/batch/", large, {"Content-Encoding": "gzip"}))

        worker = threading.Thread(target=send_large)
        worker.start()
        small = []
        while worker.is_alive() and len(small) < 200:
            small.append(_post(proxy, "api.segment.io", "/v1/track", b'{"event":"tick"}', {}))
            time.sleep(0.1)
        worker.join(timeout=300)
        seen = records(proxy)
    assert answers and answers[0] == 200
    assert small and all(code == 200 for code in small)
    large_record = next(r for r in seen if r["host"] == "us.i.posthog.com")
    assert large_record["decision"] == "redact" and large_record["answered_by"] == "emulator:posthog"
    assert len(large_record["findings"]) + large_record.get("findings_omitted", 0) >= 20_000
    assert sum(1 for r in seen if r["host"] == "api.segment.io") == len(small)
    # Stored: the worker's rows, moved into the proxy's store (of the redacted batch the emulator answered).
    with EventStore(store_path) as store:
        assert store.counts(collector="posthog") == {"total": 20_000, "good": 20_000, "bad": 0}
        assert store.counts(collector="segment")["total"] == len(small)
        stored = store.all(collector="posthog", limit=1)[0]
    assert stored.decision is not None and stored.decision["decision"] == "redact"
    assert "/home/alice" not in json.dumps(stored.properties) and "@example.com" not in json.dumps(stored.properties)


def _post(proxy: ProxySession, host: str, path: str, body: bytes, headers: dict[str, str]) -> int:
    extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    request = (f"POST http://{host}{path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n{extra}"
               f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode() + body
    answer = raw_exchange(proxy, request, wait=300)
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/") else 0


def _policy() -> Any:
    from telemetry_audit.policy import load_policy

    return load_policy(None)



@pytest.mark.parametrize(
    ("head", "where"),
    [
        (f"Host: {GITHUB_TOKEN.lower()}.segment.io\r\n", "url.host"),
        (f"X-{GITHUB_TOKEN}: 1\r\n", "key:header"),
        (f"Cookie: theme=dark; sid={GITHUB_TOKEN}\r\n", "cookie.sid"),
    ],
    ids=["host label", "header name", "cookie"],
)
def test_secrets_in_host_labels_header_names_and_cookies_are_blocked_and_never_logged(
        tmp_path: Path, confdir: Path, head: str, where: str) -> None:
    host = f"{GITHUB_TOKEN.lower()}.segment.io" if where == "url.host" else "api.segment.io"
    request = (f"POST http://{host}/v1/track HTTP/1.1\r\n" + (head if where != "url.host" else f"Host: {host}\r\n")
               + ("Host: api.segment.io\r\n" if where != "url.host" else "")
               + 'Content-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}').encode()
    with session(tmp_path, confdir) as proxy:
        answer = raw_exchange(proxy, request)
        seen = records(proxy)
        report = proxy.report(_policy())
    assert answer.startswith(b"HTTP/1.1 200")  # blocked with an empty success, so the tool does not retry
    [record] = seen
    assert record["decision"] == "block"
    assert any(f["field"] == where and f["kind"] == "secret" for f in record["findings"]), record["findings"]
    assert GITHUB_TOKEN.lower() not in Path(proxy.log_path).read_text().lower()
    assert GITHUB_TOKEN.lower() not in json.dumps(report).lower()
