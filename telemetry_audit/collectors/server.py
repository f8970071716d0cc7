"""The standalone collector: every emulator and the inspection API on one local HTTP port.

Point a tool's collector URL (`SLS_ANALYTICS_URL`, `ANALYTICS_API`, an SDK's
host option) at it, or use it as a plain-HTTP proxy (absolute-form request
lines), and read what it sent from `/micro/*`. Requests are routed by their
host name when it is a known collector's, else by path alone. Standard
library only, so it runs wherever the package is installed.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import sys
import threading
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from telemetry_audit.collectors.base import CollectorResponse, json_response
from telemetry_audit.collectors.dispatch import dispatch as dispatch_offline
from telemetry_audit.collectors.inspection import handle_inspection
from telemetry_audit.collectors.store import EventStore
from telemetry_audit.decoders import DecodeLimits, decode_request
from telemetry_audit.model import Request

log = logging.getLogger(__name__)

DEFAULT_LISTEN = "127.0.0.1:9090"
MAX_BODY_BYTES = 32 * 1024 * 1024
"""Larger request bodies get 413 before any emulator sees them (vendors' own limits are lower: OTLP's 20 MiB)."""
DECODE_LIMITS = DecodeLimits(max_decoded_bytes=MAX_BODY_BYTES)

RequestHook = Callable[[Request], Mapping[str, Any] | None]
"""Called for every collector request before it is answered; a returned mapping is stored as the decision."""


class CollectorServerError(Exception):
    """The collector cannot start (bad address, port in use); the message is for the user."""


def dispatch(request: Request, store: EventStore, on_request: RequestHook | None = None) -> CollectorResponse:
    """Answer one request and record it: inspection, else the offline dispatcher (404 for unknown paths)."""
    inspection = handle_inspection(request, store)
    if inspection is not None:
        return inspection
    decision = on_request(request) if on_request is not None else None
    answer = dispatch_offline(decode_request(request, DECODE_LIMITS), store, decision=decision, not_found=True)
    return CollectorResponse(answer.status, answer.headers, answer.body, answer.accepted)


def _read_chunked(stream: Any, limit: int) -> bytes:
    body = bytearray()
    while True:
        size_line = stream.readline(1024)
        try:
            size = int(size_line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise ValueError("bad chunk size") from None
        if size == 0:
            while stream.readline(1024) not in (b"\r\n", b"\n", b""):
                pass  # trailers
            return bytes(body)
        if len(body) + size > limit:
            raise OverflowError
        body += stream.read(size)
        stream.readline(1024)


def _handler(store: EventStore, on_request: RequestHook | None) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "telemetry-audit-collector"

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("%s " + format, self.address_string(), *args)

        def _respond(self, response: CollectorResponse) -> None:
            self.send_response(response.status)
            for name, value in response.headers:
                if name.lower() not in ("content-length", "connection", "transfer-encoding"):
                    self.send_header(name, value)
            if response.status not in (204, 304):
                self.send_header("Content-Length", str(len(response.body)))
            self.end_headers()
            if response.status not in (204, 304) and self.command != "HEAD":
                self.wfile.write(response.body)

        def _request(self) -> Request | None:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                try:
                    body = _read_chunked(self.rfile, MAX_BODY_BYTES)
                except OverflowError:
                    self._refuse(413, "request body too large")
                    return None
                except ValueError as e:
                    self._refuse(400, str(e))
                    return None
            else:
                try:
                    length = int(self.headers.get("Content-Length") or 0)
                except ValueError:
                    self._refuse(400, "bad Content-Length")
                    return None
                if length > MAX_BODY_BYTES:
                    self._refuse(413, "request body too large")
                    return None
                body = self.rfile.read(length) if length > 0 else b""
            target = urlsplit(self.path)
            # Absolute-form targets (`POST http://host/path`) come from clients using us as HTTP proxy.
            netloc = target.netloc or self.headers.get("Host", "")
            parts = urlsplit(f"//{netloc}")
            return Request(
                method=self.command,
                scheme=target.scheme or "http",
                host=(parts.hostname or "").lower(),
                port=parts.port or 80,
                path=target.path or "/",
                query=tuple(parse_qsl(target.query, keep_blank_values=True)),
                headers=tuple(self.headers.items()),
                body=body,
            )

        def _refuse(self, status: int, message: str) -> None:
            self.close_connection = True
            self._respond(json_response(status, {"error": message}))

        def _handle(self) -> None:
            request = self._request()
            if request is None:
                return
            try:
                response = dispatch(request, store, on_request)
            except Exception:
                # Fail visibly: a request we could not record is an error for the client too.
                log.exception("collector failed on %s %s", request.method, request.path)
                response = json_response(500, {"error": "internal error in telemetry-audit collector"})
            self._respond(response)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _handle

    return Handler


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client hanging up mid-answer is its business; anything else is ours and gets a traceback.
        if isinstance(sys.exc_info()[1], ConnectionError):
            log.debug("client %s disconnected", client_address)
            return
        super().handle_error(request, client_address)


def make_server(host: str, port: int, store: EventStore, on_request: RequestHook | None = None) -> ThreadingHTTPServer:
    """A bound, not yet serving, collector server (`port=0` picks a free one)."""
    try:
        return _Server((host, port), _handler(store, on_request))
    except OSError as e:
        raise CollectorServerError(f"cannot listen on {host}:{port}: {e.strerror or e}") from e


def serve(
    host: str,
    port: int,
    store: EventStore,
    *,
    on_request: RequestHook | None = None,
    ready: Callable[[str], None] | None = None,
) -> None:
    """Serve until interrupted; `ready` gets the base URL once the port is bound."""
    server = make_server(host, port, store, on_request)
    try:
        if ready is not None:
            ready(_url(server))
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def _url(server: ThreadingHTTPServer) -> str:
    host, port = server.server_address[:2]
    text = host.decode() if isinstance(host, bytes) else str(host)
    shown = f"[{text}]" if ":" in text else text
    return f"http://{shown}:{port}"


class CollectorServer:
    """The collector on a background thread, for tests: `with CollectorServer() as srv: srv.url`."""

    def __init__(
        self,
        store: EventStore | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        on_request: RequestHook | None = None,
    ) -> None:
        self.store = store if store is not None else EventStore()
        self._server = make_server(host, port, self.store, on_request)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return _url(self._server)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> CollectorServer:
        if self._thread is None:
            # A short poll interval keeps stop() (and so every test using this) quick.
            self._thread = threading.Thread(
                target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="collector", daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> CollectorServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def parse_listen(value: str) -> tuple[str, int]:
    """`HOST:PORT`, `[IPv6]:PORT` or a bare `PORT` (on 127.0.0.1), for argparse."""
    text = value.strip()
    if text.isdigit():
        host, port_text = "127.0.0.1", text
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep or not port_text.isdigit():
            raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {value!r}")
        host = host.strip("[]") or "127.0.0.1"
    port = int(port_text)
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port {port} is out of range")
    return host, port


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `telemetry-audit collector` options."""
    parser.add_argument(
        "--listen",
        type=parse_listen,
        default=parse_listen(os.environ.get("TELEMETRY_AUDIT_COLLECTOR_LISTEN", DEFAULT_LISTEN)),
        metavar="HOST:PORT",
        help=f"address to serve on (default {DEFAULT_LISTEN}, env TELEMETRY_AUDIT_COLLECTOR_LISTEN)",
    )
    parser.add_argument(
        "--store",
        default=os.environ.get("TELEMETRY_AUDIT_STORE", ":memory:"),
        metavar="FILE",
        help="SQLite file that keeps received events across restarts (default: in memory, env TELEMETRY_AUDIT_STORE)",
    )


def main(args: argparse.Namespace, on_request: RequestHook | None = None) -> int:
    """Run the collector until Ctrl-C; raises `CollectorServerError` if it cannot listen."""
    host, port = args.listen
    if not _is_loopback(host):
        print(f"warning: serving on {host}, reachable from other machines", file=sys.stderr)
    with EventStore(args.store) as store:

        def ready(url: str) -> None:
            print(f"telemetry-audit collector on {url} (inspect: {url}/micro/all)", file=sys.stderr, flush=True)

        serve(host, port, store, on_request=on_request, ready=ready)
    return 0
