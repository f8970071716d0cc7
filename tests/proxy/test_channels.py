"""Every channel through a real proxy on 127.0.0.1: raw TCP in a tunnel, trailers, other traffic, TLS failures,
large bodies audited off the event loop.

A local catcher stands in for "upstream": it records every byte that reaches it, so a test can say what got
through. A small policy marks 127.0.0.1 as a telemetry host (the catcher's address), so online traffic to it is
audited like traffic to a real collector. No test sends anything beyond 127.0.0.1.
"""

from __future__ import annotations

import gzip
import json
import os
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
from telemetry_audit.report.build import report_from_entries
from telemetry_audit.session import ProxySession
from tests.proxy.ws_echo import EchoServer, ws_exchange

GITHUB_TOKEN = "ghp_" + "C4t8R2w6Q1z5Y9x3V7b0N4m8L2k6J1h5G9f3"
PLANTED_SECRETS = (GITHUB_TOKEN,)
"""Swept for in every file the suite wrote (`tests/conftest.py`): none may hold it in clear."""


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
                    self._read_body(conn, data)
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
                    return

    def _read_body(self, conn: socket.socket, data: bytes) -> None:
        """Keep what follows an HTTP request's head until its Content-Length is there (a body may come apart)."""
        while b"\r\n\r\n" not in data and (more := conn.recv(65536)):
            data += more
            with self._lock:
                self.received += more
        head, _, body = data.partition(b"\r\n\r\n")
        length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                       if line.lower().startswith(b"content-length:")), 0)
        while len(body) < length and (more := conn.recv(65536)):
            body += more
            with self._lock:
                self.received += more

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


def test_online_raw_tcp_secret_split_over_two_reads_is_caught_and_the_connection_closed(
        tmp_path: Path, confdir: Path, catcher: Catcher, loopback_policy: str) -> None:
    first, second = GITHUB_TOKEN[:18].encode(), GITHUB_TOKEN[18:].encode()
    with session(tmp_path, confdir, offline=False, policy=(loopback_policy,)) as proxy:
        with socket.create_connection((proxy.host, proxy.port), timeout=3) as conn:
            conn.sendall(f"CONNECT 127.0.0.1:{catcher.port} HTTP/1.1\r\n\r\n".encode())
            conn.recv(4096)
            conn.sendall(b"\r\nlogin " + first)
            time.sleep(0.5)  # two reads on the proxy's side
            conn.sendall(second + b"\r\n")
            time.sleep(0.5)
            try:
                conn.sendall(b"more after the block\r\n")
                closed = conn.recv(1) == b""
            except (ConnectionError, TimeoutError):
                closed = True
        time.sleep(0.3)
        seen = records(proxy)
    assert closed  # the proxy closed the tunnel at the blocked chunk
    assert GITHUB_TOKEN.encode() not in catcher.received and second not in catcher.received
    assert b"more after the block" not in catcher.received
    chunks = [r for r in seen if r.get("channel") == "tcp" and r.get("telemetry")]
    assert [c["decision"] for c in chunks][-1] == "block" and chunks[-1]["answered_by"] == "connection closed"
    assert GITHUB_TOKEN not in Path(proxy.log_path).read_text()


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


# --- WebSocket (ws and wss) -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ws_upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EchoServer]:
    """A local WebSocket echo server, ws and wss (its certificate from its own CA: the proxy connects with
    `ssl_insecure`, the client trusts only the proxy's CA)."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from mitmproxy.certs import CertStore

    ca_dir = tmp_path_factory.mktemp("ws-upstream-ca")
    entry = CertStore.from_store(ca_dir, "wsupstream", 2048).get_cert(
        "localhost", [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    cert_file, key_file = ca_dir / "localhost.pem", ca_dir / "localhost-key.pem"
    cert_file.write_bytes(entry.cert.to_pem())
    key_file.write_bytes(entry.privatekey.private_bytes(serialization.Encoding.PEM,
                                                        serialization.PrivateFormat.PKCS8,
                                                        serialization.NoEncryption()))
    server = EchoServer().start(cert_file, key_file)
    yield server
    server.stop()


def ws_session(tmp_path: Path, confdir: Path, **settings: Any) -> ProxySession:
    return ProxySession(ProxySettings(**settings), confdir=str(confdir), workdir=str(tmp_path), audited_env={},
                        mitmproxy_options={"ssl_insecure": True})


WS_CLEAN = json.dumps({"type": "ping", "seq": 1})
WS_SECRET = json.dumps({"type": "auth", "token": GITHUB_TOKEN})


@pytest.mark.parametrize("secure", [False, True], ids=["ws", "wss"])
def test_online_websocket_message_with_a_secret_is_dropped_and_clean_ones_pass(
        tmp_path: Path, confdir: Path, ws_upstream: EchoServer, loopback_policy: str, secure: bool) -> None:
    marker = f"/live-{'wss' if secure else 'ws'}-drop"
    with ws_session(tmp_path, confdir, offline=False, policy=(loopback_policy,)) as proxy:
        port = ws_upstream.wss_port if secure else ws_upstream.ws_port
        result = ws_exchange(proxy.host, proxy.port, "127.0.0.1", port, [WS_CLEAN, WS_SECRET, WS_CLEAN + " "],
                             secure=secure, ca_file=proxy.ca_cert, path=marker)
        time.sleep(0.3)
        seen = records(proxy)
        report = proxy.report(_policy())
    assert result.status == 101 and not result.closed
    assert result.echoes == [WS_CLEAN.encode(), (WS_CLEAN + " ").encode()]  # the blocked one has no echo
    assert marker in ws_upstream.paths
    assert GITHUB_TOKEN.encode() not in ws_upstream.received_bytes()
    messages = [r for r in seen if r.get("channel") == "websocket"]
    assert [m["decision"] for m in messages] == ["allow", "block", "allow"]
    assert messages[1]["answered_by"] == "blocked" and messages[1]["host"] == "127.0.0.1"
    assert any(f["kind"] == "secret" and f["field"] == "token" for f in messages[1]["findings"])
    assert [r.get("channel", "http") for r in seen].count("http") == 1  # the handshake, recorded too
    assert report["summary"]["blocked"] == 1 and report["summary"]["telemetry"] == 4
    assert GITHUB_TOKEN not in Path(proxy.log_path).read_text() and GITHUB_TOKEN not in json.dumps(report)


@pytest.mark.parametrize("secure", [False, True], ids=["ws", "wss"])
def test_online_websocket_with_block_style_kill_is_closed_at_the_blocked_message(
        tmp_path: Path, confdir: Path, ws_upstream: EchoServer, loopback_policy: str, secure: bool) -> None:
    marker = f"/live-{'wss' if secure else 'ws'}-kill"
    with ws_session(tmp_path, confdir, offline=False, policy=(loopback_policy,), block_style="kill") as proxy:
        port = ws_upstream.wss_port if secure else ws_upstream.ws_port
        result = ws_exchange(proxy.host, proxy.port, "127.0.0.1", port, [WS_CLEAN, WS_SECRET, WS_CLEAN],
                             secure=secure, ca_file=proxy.ca_cert, path=marker)
        time.sleep(0.3)
        seen = records(proxy)
    assert result.status == 101 and result.closed
    assert result.echoes == [WS_CLEAN.encode()]  # nothing after the blocked message
    assert GITHUB_TOKEN.encode() not in ws_upstream.received_bytes()
    messages = [r for r in seen if r.get("channel") == "websocket"]
    assert [m["decision"] for m in messages] == ["allow", "block"]
    assert messages[1]["answered_by"] == "connection closed"
    assert GITHUB_TOKEN not in Path(proxy.log_path).read_text()


def test_online_websocket_secret_split_over_two_messages_is_caught_at_the_seam(
        tmp_path: Path, confdir: Path, ws_upstream: EchoServer, loopback_policy: str) -> None:
    first, second = f"login {GITHUB_TOKEN[:20]}", f"{GITHUB_TOKEN[20:]} done"
    with ws_session(tmp_path, confdir, offline=False, policy=(loopback_policy,)) as proxy:
        result = ws_exchange(proxy.host, proxy.port, "127.0.0.1", ws_upstream.ws_port, [WS_CLEAN, first, second,
                                                                                        WS_CLEAN], secure=False,
                             path="/live-seam")
        time.sleep(0.3)
        seen = records(proxy)
    assert result.echoes == [WS_CLEAN.encode(), first.encode(), WS_CLEAN.encode()]  # the second half is dropped
    assert second.encode() not in ws_upstream.received_bytes()
    messages = [r for r in seen if r.get("channel") == "websocket"]
    assert [m["decision"] == "block" for m in messages] == [False, False, True, False]
    assert GITHUB_TOKEN not in Path(proxy.log_path).read_text()


@pytest.mark.parametrize("secure", [False, True], ids=["ws", "wss"])
def test_offline_websocket_reaches_nothing_and_is_recorded(tmp_path: Path, confdir: Path, ws_upstream: EchoServer,
                                                           loopback_policy: str, secure: bool) -> None:
    marker = f"/live-{'wss' if secure else 'ws'}-offline"
    for policy in ((), (loopback_policy,)):  # not telemetry: refused; telemetry: answered here, no upgrade
        workdir = tmp_path / f"policies-{len(policy)}"
        workdir.mkdir()
        with ws_session(workdir, confdir, policy=policy) as proxy:
            port = ws_upstream.wss_port if secure else ws_upstream.ws_port
            result = ws_exchange(proxy.host, proxy.port, "127.0.0.1", port, [WS_SECRET], secure=secure,
                                 ca_file=proxy.ca_cert, path=marker)
            time.sleep(0.3)
            seen = records(proxy)
        assert result.status != 101 and not result.echoes
        assert marker not in ws_upstream.paths
        [handshake] = [r for r in seen if r.get("channel", "http") == "http"]
        assert handshake["answered_by"] == ("refused offline" if not policy else "no emulator")
        assert handshake["telemetry"] is bool(policy)
    assert GITHUB_TOKEN.encode() not in ws_upstream.received_bytes()


NODE_WS_CLIENT = r"""
const [url, messages] = [process.argv[1], JSON.parse(process.argv[2])];
const ws = new WebSocket(url);
const seen = {open: false, echoes: [], closed: null};
let next = 0;
const send = () => {
  if (next < messages.length) { try { ws.send(messages[next++]); } catch (e) {} setTimeout(send, 700); }
  else ws.close(1000);
};
ws.onopen = () => { seen.open = true; send(); };
ws.onmessage = (event) => seen.echoes.push(String(event.data));
ws.onclose = (event) => { seen.closed = event.code; console.log(JSON.stringify(seen)); process.exit(0); };
setTimeout(() => { console.log(JSON.stringify(seen)); process.exit(0); }, 15000);
"""


def _node_has_websocket() -> bool:
    try:
        found = subprocess.run(["node", "--experimental-websocket", "-e", "process.exit(typeof WebSocket === "
                                "'function' ? 0 : 1)"], capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return found.returncode == 0


@pytest.mark.skipif(not _node_has_websocket(), reason="no node with a WebSocket global (--experimental-websocket)")
@pytest.mark.parametrize("secure", [False, True], ids=["ws", "wss"])
def test_node_websocket_client_through_the_session_environment(
        tmp_path: Path, confdir: Path, ws_upstream: EchoServer, loopback_policy: str, secure: bool) -> None:
    """Node's own WebSocket (undici), routed by the session's client environment (the Node preload)."""
    port = ws_upstream.wss_port if secure else ws_upstream.ws_port
    url = f"{'wss' if secure else 'ws'}://localhost:{port}/node-{'wss' if secure else 'ws'}"
    with ws_session(tmp_path, confdir, offline=False, policy=(loopback_policy,)) as proxy:
        env = proxy.client_environment({"PATH": os.environ["PATH"], "HOME": str(tmp_path)}, bypass_loopback=False)
        done = subprocess.run(["node", "--experimental-websocket", "-e", NODE_WS_CLIENT, url,
                               json.dumps(["hello", WS_SECRET, "bye"])], env=env, capture_output=True, text=True,
                              timeout=60)
        time.sleep(0.3)
        seen = records(proxy)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["open"] and result["echoes"] == ["hello", "bye"], done.stderr
    assert GITHUB_TOKEN.encode() not in ws_upstream.received_bytes()
    messages = [r for r in seen if r.get("channel") == "websocket"]
    assert [m["decision"] == "block" for m in messages] == [False, True, False]
    assert messages[0]["host"] == "localhost"


# --- telemetry recognised by its payload; what no emulator understands is kept, masked -------------------------


NEUTRAL_HOST = "sync.internal-tool.test"
"""Not in the catalogue; its name and the path `/v2/state` say nothing about telemetry."""


def _json_post(proxy: ProxySession, host: str, path: str, body: Any) -> bytes:
    content = json.dumps(body).encode()
    return raw_exchange(proxy, (f"POST http://{host}{path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: "
                                f"application/json\r\nContent-Length: {len(content)}\r\nConnection: close\r\n\r\n")
                        .encode() + content)


def test_offline_payload_telemetry_is_answered_audited_and_its_masked_payload_kept(tmp_path: Path,
                                                                                  confdir: Path) -> None:
    import sqlite3

    store = tmp_path / "events.sqlite"
    event = {"event": "cli.sync", "anonymousId": "anon-7", "timestamp": "2026-11-30T10:00:00Z",
             "properties": {"command": "sync", "cwd": "/home/alice/acme-secret-plans"}}
    with session(tmp_path, confdir, store=str(store)) as proxy:
        events_answer = _json_post(proxy, NEUTRAL_HOST, "/v2/state", event)
        leak_answer = _json_post(proxy, NEUTRAL_HOST, "/v2/state", {**event, "token": GITHUB_TOKEN})
        benign_answer = _json_post(proxy, NEUTRAL_HOST, "/v2/state", {"name": "my-package", "version": "1.0.0"})
        report = proxy.report(_policy())
    assert events_answer.startswith(b"HTTP/1.1 200") and events_answer.endswith(b"{}")  # a plausible success
    assert leak_answer.startswith(b"HTTP/1.1 200")  # blocked with an empty success
    assert benign_answer.startswith(b"HTTP/1.1 502")  # ordinary traffic fails as with no network
    redacted, blocked = report["requests"]
    assert redacted["decision"] == "redact" and blocked["decision"] == "block"
    assert report["summary"]["telemetry"] == 2 and report["summary"]["other"] == 1
    [other] = report["other_traffic"]
    assert other["host"] == NEUTRAL_HOST and other["answered_by"] == "refused offline"
    # What would have been sent, decoded and masked: in the report...
    body = redacted["payload"]["body"]
    assert body["event"] == "cli.sync" and body["properties"]["command"] == "sync"
    assert "alice" not in body["properties"]["cwd"]
    assert blocked["payload"]["body"]["token"] != GITHUB_TOKEN and GITHUB_TOKEN not in json.dumps(report)
    # ...and in the store, instead of the raw body.
    with sqlite3.connect(store) as db:
        rows = [json.loads(meta) for (meta,) in db.execute("SELECT request_meta FROM events")]
    assert len(rows) == 2 and all("body_preview" not in row for row in rows)
    assert [row["payload"]["body"]["event"] for row in rows] == ["cli.sync", "cli.sync"]
    stored = store.read_bytes()
    assert GITHUB_TOKEN.encode() not in stored and b"acme-secret-plans" not in stored


def test_online_payload_telemetry_is_audited_and_benign_json_passes(tmp_path: Path, confdir: Path,
                                                                    catcher: Catcher) -> None:
    host = f"127.0.0.1:{catcher.port}"
    event = {"event": "cli.sync", "distinct_id": "d-1", "properties": {"token": GITHUB_TOKEN}}
    with session(tmp_path, confdir, offline=False) as proxy:  # the default policy: 127.0.0.1 is not telemetry
        blocked = _json_post(proxy, host, "/v2/state", event)
        passed = _json_post(proxy, host, "/v2/state", {"name": "my-package", "version": "1.0.0"})
        time.sleep(0.3)
        seen = records(proxy)
    assert blocked.startswith(b"HTTP/1.1 200") and passed.startswith(b"HTTP/1.1 200")
    assert GITHUB_TOKEN.encode() not in catcher.received and b"my-package" in catcher.received
    audited, other = seen
    assert audited["telemetry"] is True and audited["decision"] == "block" and "payload" in audited
    assert other["telemetry"] is False and other["answered_by"] == "upstream"


# --- failures fail closed (the adapter's own guards) ------------------------------------------------------------


def test_acting_on_a_large_request_failing_in_its_thread_kills_the_flow(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """The large-body path acts in a thread while the flow waits intercepted: if acting raises, the flow is
    killed when resumed, never sent on unanswered (it would pass unaudited)."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    from mitmproxy import http
    from mitmproxy.test import taddons, tflow

    from telemetry_audit.proxy import workers
    from telemetry_audit.proxy.addon import OFF_LOOP_BYTES, TelemetryAudit

    body = json.dumps({"event": "x", "properties": {"blob": "a" * OFF_LOOP_BYTES}}).encode()
    flow = tflow.tflow(req=http.Request.make("POST", "https://api.segment.io/v1/track", body,
                                             {"Content-Type": "application/json"}))
    addon = TelemetryAudit()
    executor = ThreadPoolExecutor(1)

    def failing_act(*args: Any) -> None:
        raise RuntimeError("acting failed half-way")

    async def scenario() -> None:
        with taddons.context(addon) as tctx:
            tctx.configure(addon, taudit_log=str(tmp_path / "audit.jsonl"))
            assert addon.pool is not None
            workers._init_worker(addon.pool.recipe)  # the worker's auditor, built here: the pool is a thread
            monkeypatch.setattr(addon.pool, "executor", lambda: executor)
            monkeypatch.setattr(addon, "_act", failing_act)
            addon.request(flow)
            assert flow.intercepted  # waiting on the audit, off the loop
            for _ in range(600):
                if not flow.intercepted:
                    break
                await asyncio.sleep(0.05)

    try:
        asyncio.run(scenario())
    finally:
        executor.shutdown()
    assert not flow.intercepted and flow.response is None
    assert flow.error is not None and flow.error.msg == flow.error.KILLED_MESSAGE
    assert not flow.live


def test_other_traffic_whose_names_cannot_be_audited_is_recorded_masked(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from mitmproxy import http
    from mitmproxy.test import taddons, tflow

    from telemetry_audit.proxy.addon import TelemetryAudit

    log = tmp_path / "audit.jsonl"
    host, path = "registry.example.test", "/pkg/" + GITHUB_TOKEN
    flow = tflow.tflow(req=http.Request.make("GET", f"https://{host}{path}"))
    addon = TelemetryAudit()

    def failing_evaluate(*args: Any) -> Any:
        raise RuntimeError("the URL audit failed")

    with taddons.context(addon) as tctx:
        tctx.configure(addon, taudit_log=str(log))
        assert addon.url_auditor is not None
        monkeypatch.setattr(addon.url_auditor, "evaluate", failing_evaluate)
        addon.request(flow)
    [record] = [json.loads(line) for line in log.read_text().splitlines()]
    assert record["telemetry"] is False and record["answered_by"] == "refused offline"
    assert record["host"] != host and record["path"] != path  # unknown what they hold: both masked
    assert host not in log.read_text() and GITHUB_TOKEN not in log.read_text()
    assert flow.response is not None and flow.response.status_code == 502


# --- nothing in clear: names carrying a token, in every output --------------------------------------------------


@pytest.mark.parametrize(
    ("host", "path", "head"),
    [
        ("api.segment.io", f"/v1/track/{GITHUB_TOKEN}", ""),
        ("api.segment.io", "/v1/track/" + GITHUB_TOKEN.replace("_", "%5F"), ""),  # the server reads the token
        (f"{GITHUB_TOKEN.lower()}.segment.io", "/v1/track", ""),
        ("api.segment.io", f"/v1/x#{GITHUB_TOKEN}", ""),
        ("api.segment.io", "/v1/x", f"X-{GITHUB_TOKEN}: 1\r\n"),
    ],
    ids=["path segment", "percent-encoded path", "host label", "fragment", "header name"],
)
def test_a_token_in_a_name_is_blocked_and_masked_in_log_reports_store_and_inspection_api(
        tmp_path: Path, confdir: Path, host: str, path: str, head: str) -> None:
    from io import StringIO

    from rich.console import Console

    from telemetry_audit.report import WRITERS
    from telemetry_audit.report.table import render_table

    store = tmp_path / "events.sqlite"
    with session(tmp_path, confdir, store=str(store)) as proxy:
        answer = raw_exchange(proxy, (f"POST http://{host}{path} HTTP/1.1\r\nHost: {host}\r\n{head}Content-Type: "
                                      "application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}").encode())
        inspection = raw_exchange(proxy, b"GET http://telemetry-audit.local/micro/all HTTP/1.1\r\n"
                                         b"Host: telemetry-audit.local\r\nConnection: close\r\n\r\n")
        report = proxy.report(_policy())
    assert answer.startswith(b"HTTP/1.1 200") and inspection.startswith(b"HTTP/1.1 200")
    [request] = report["requests"]
    assert request["decision"] == "block"
    outputs = [Path(proxy.log_path).read_bytes(), store.read_bytes(), inspection]
    outputs += [writer(report).encode() for writer in WRITERS.values()]
    terminal = StringIO()
    render_table(report, Console(file=terminal, width=200), verbose=True)
    outputs.append(terminal.getvalue().encode())
    for output in outputs:
        assert GITHUB_TOKEN.lower().encode() not in output.lower()


@pytest.mark.parametrize("audit_all", [False, True], ids=["default", "audit-all"])
def test_offline_auditing_never_changes_the_answer_to_a_request_that_is_not_telemetry(
        tmp_path: Path, confdir: Path, audit_all: bool) -> None:
    """A cloud metadata endpoint answered `200 {}` makes SDKs misbehave: offline it fails as with no network,
    whether or not every request is audited (with `audit_all` it is audited too)."""
    host = "169.254.169.254"
    with session(tmp_path, confdir, audit_all=audit_all) as proxy:
        answer = raw_exchange(proxy, f"GET http://{host}/latest/meta-data/?t={GITHUB_TOKEN} HTTP/1.1\r\n"
                                     f"Host: {host}\r\nConnection: close\r\n\r\n".encode())
        telemetry = _json_post(proxy, "api.segment.io", "/v1/track", {"event": "x"})
        [metadata, segment] = records(proxy)
    assert answer.startswith(b"HTTP/1.1 502") and telemetry.startswith(b"HTTP/1.1 200")
    assert metadata["answered_by"] == "refused offline" and metadata["status"] == 502
    assert segment["answered_by"] == "emulator:segment"
    if audit_all:  # audited with the full policy: the token in the query is a finding
        assert metadata["decision"] == "block" and metadata["findings"]
    # Audited or not, it is no telemetry: reports count it apart (`audited_only`), the Segment event as telemetry.
    assert (metadata.get("audited_only"), segment.get("audited_only")) == ((True if audit_all else None), None)
    summary = report_from_entries([metadata, segment], _policy(), total_requests=2)["summary"]
    assert (summary["telemetry"], summary["audited_only"], summary["other"]) == (1, int(audit_all), int(not audit_all))
    assert GITHUB_TOKEN not in Path(proxy.log_path).read_text()
