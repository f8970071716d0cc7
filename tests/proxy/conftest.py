"""Real-proxy fixtures: a `mitmdump` on 127.0.0.1, a catcher that answers every request itself, a local upstream.

Everything listens on 127.0.0.1 and nothing leaves the machine: the catcher runs mitmdump with
`connection_strategy=lazy` and answers in its `request` hook, so host names that do not resolve offline
(telemetry.sst.dev) still work. Tests tell their own requests apart by a unique token in the path.
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from mitmproxy.certs import CertStore

MITMDUMP = Path(sys.executable).with_name("mitmdump")
"""The mitmdump of the venv running the tests (mitmproxy is a dependency of the package)."""

_STARTUP_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Mitmdump:
    """A running mitmdump."""

    port: int
    """Its listening port on 127.0.0.1."""
    ca_cert_path: Path
    """The CA certificate (PEM) clients must trust: `mitmproxy-ca-cert.pem` in the confdir."""
    confdir: Path
    """mitmproxy's confdir, holding the CA key too."""

    @property
    def proxy_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass(frozen=True)
class CaughtRequest:
    """One request the catcher answered."""

    method: str
    scheme: str
    host: str
    """The host name the client asked for (from CONNECT/SNI or the absolute URL), never a resolved address."""
    port: int
    path: str
    body: str
    headers: dict[str, str]


@dataclass(frozen=True)
class Catcher:
    """A mitmdump that records and answers every request itself (200, a JSON body naming host and path)."""

    proxy: Mitmdump
    log_path: Path

    def requests(self, token: str = "") -> list[CaughtRequest]:
        """Requests recorded so far whose path contains `token`."""
        if not self.log_path.exists():
            return []
        lines = self.log_path.read_text(encoding="utf-8").splitlines()
        caught = [CaughtRequest(**json.loads(line)) for line in lines if line]
        return [request for request in caught if token in request.path]


@dataclass(frozen=True)
class UpstreamRequest:
    """One request the local upstream server received."""

    scheme: str
    method: str
    path: str
    host_header: str
    body: str


@dataclass
class Upstream:
    """Local HTTP and HTTPS servers on 127.0.0.1 answering 200 `upstream <path>`; HTTPS uses its own CA."""

    http_port: int
    https_port: int
    ca_cert_path: Path
    """The CA that signed the HTTPS server's certificate (for `localhost` and 127.0.0.1), unrelated to mitmproxy."""
    received: list[UpstreamRequest] = field(default_factory=list)

    def requests(self, token: str = "") -> list[UpstreamRequest]:
        return [request for request in list(self.received) if token in request.path]


CATCHER_ADDON = '''
"""Answer every request locally and append it to a JSON-lines log."""
import json
import os

from mitmproxy import http

LOG = os.environ["CATCHER_LOG"]


def request(flow: http.HTTPFlow) -> None:
    record = {
        "method": flow.request.method,
        "scheme": flow.request.scheme,
        "host": flow.request.pretty_host,
        "port": flow.request.port,
        "path": flow.request.path,
        "body": flow.request.get_text(strict=False) or "",
        "headers": dict(flow.request.headers),
    }
    with open(LOG, "a", encoding="utf-8") as log:
        log.write(json.dumps(record) + "\\n")
    answer = {"caught": flow.request.pretty_host, "path": flow.request.path}
    flow.response = http.Response.make(200, json.dumps(answer), {"content-type": "application/json"})
'''


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_until_listening(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + _STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"mitmdump exited with {process.returncode}:\n{log.read_text(errors='replace')}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"mitmdump did not listen on 127.0.0.1:{port}:\n{log.read_text(errors='replace')}")


@contextmanager
def running_mitmdump(
    confdir: Path, *args: str, env: dict[str, str] | None = None, log: Path | None = None
) -> Iterator[Mitmdump]:
    """Run `mitmdump` on a free 127.0.0.1 port with `confdir` and extra `args`; stop it on exit."""
    if not MITMDUMP.exists():
        pytest.skip(f"mitmdump not found next to {sys.executable}")
    log = log or confdir / "mitmdump.log"
    for attempt in range(3):
        port = free_port()
        command = [str(MITMDUMP), "--listen-host", "127.0.0.1", "--listen-port", str(port)]
        command += ["--set", f"confdir={confdir}", *args]
        with log.open("ab") as out:
            process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
        try:
            _wait_until_listening(port, process, log)
        except RuntimeError:
            if attempt == 2:
                raise
            continue  # lost the port to someone else between bind and listen: try another
        except BaseException:
            process.kill()
            process.wait()
            raise
        try:
            yield Mitmdump(port=port, ca_cert_path=confdir / "mitmproxy-ca-cert.pem", confdir=confdir)
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        return


@pytest.fixture(scope="session")
def mitm_confdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A confdir whose CA exists before any mitmdump starts (shared by every mitmdump of the session)."""
    confdir = tmp_path_factory.mktemp("mitmproxy-conf")
    CertStore.from_store(confdir, "mitmproxy", 2048)
    return confdir


@pytest.fixture(scope="session")
def mitmdump(mitm_confdir: Path) -> Iterator[Mitmdump]:
    """A plain mitmdump (regular proxy mode, default options)."""
    with running_mitmdump(mitm_confdir) as proxy:
        yield proxy


@pytest.fixture(scope="session")
def catcher(mitm_confdir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Catcher]:
    """A mitmdump that answers every request itself and records it (see `Catcher`)."""
    workdir = tmp_path_factory.mktemp("catcher")
    addon = workdir / "catcher_addon.py"
    addon.write_text(CATCHER_ADDON, encoding="utf-8")
    log_path = workdir / "caught.jsonl"
    env = {**_plain_environment(), "CATCHER_LOG": str(log_path)}
    args = ("--set", "connection_strategy=lazy", "-s", str(addon))
    with running_mitmdump(mitm_confdir, *args, env=env, log=workdir / "mitmdump.log") as proxy:
        yield Catcher(proxy=proxy, log_path=log_path)


def _plain_environment() -> dict[str, str]:
    """This process's environment without proxy variables (mitmdump itself must connect directly)."""
    names = {"http_proxy", "https_proxy", "all_proxy", "no_proxy"}
    return {key: value for key, value in os.environ.items() if key.lower() not in names}


class _UpstreamHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _UpstreamServer

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode("utf-8", "replace") if length else ""
        self.server.upstream.received.append(
            UpstreamRequest(
                scheme=self.server.scheme,
                method=self.command,
                path=self.path,
                host_header=self.headers.get("Host", ""),
                body=body,
            )
        )
        answer = f"upstream {self.path}".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    do_GET = do_POST = do_PUT = _answer

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _UpstreamServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, upstream: Upstream, scheme: str) -> None:
        super().__init__(("127.0.0.1", 0), _UpstreamHandler)
        self.upstream = upstream
        self.scheme = scheme


@pytest.fixture(scope="session")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Upstream]:
    """See `Upstream`: a stand-in for a host reached directly (NO_PROXY) and a private/system CA."""
    ca_dir = tmp_path_factory.mktemp("upstream-ca")
    store = CertStore.from_store(ca_dir, "upstream", 2048)
    sans = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    entry = store.get_cert("localhost", sans)
    cert_file = ca_dir / "localhost.pem"
    cert_file.write_bytes(entry.cert.to_pem())
    key_file = ca_dir / "localhost-key.pem"
    key_file.write_text(_private_key_pem(entry.privatekey), encoding="ascii")

    upstream = Upstream(http_port=0, https_port=0, ca_cert_path=ca_dir / "upstream-ca-cert.pem")
    plain = _UpstreamServer(upstream, "http")
    secure = _UpstreamServer(upstream, "https")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    secure.socket = context.wrap_socket(secure.socket, server_side=True)
    upstream.http_port = plain.server_address[1]
    upstream.https_port = secure.server_address[1]
    threads = [threading.Thread(target=server.serve_forever, daemon=True) for server in (plain, secure)]
    for thread in threads:
        thread.start()
    try:
        yield upstream
    finally:
        for server in (plain, secure):
            server.shutdown()
            server.server_close()


def _private_key_pem(key: Any) -> str:
    from cryptography.hazmat.primitives import serialization

    pem: bytes = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return pem.decode("ascii")
