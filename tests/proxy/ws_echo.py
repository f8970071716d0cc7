"""A WebSocket echo server and client for the channel tests, both on wsproto (a mitmproxy dependency).

No WebSocket server library is installed, so the server is a small asyncio loop in a thread: it listens on
127.0.0.1 in plain (`ws`) and TLS (`wss`, a certificate from its own CA, unrelated to mitmproxy's), keeps every
message a client sent, and echoes it back. The client speaks through an HTTP proxy: `ws` as an absolute-form
`GET` (what a browser or curl does with an http proxy), `wss` inside a `CONNECT` tunnel.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
from dataclasses import dataclass, field
from pathlib import Path

from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Event,
    Message,
    Ping,
    RejectConnection,
    Request,
    TextMessage,
)


@dataclass
class EchoServer:
    """What reached the upstream WebSocket server: each connection's path and every message clients sent."""

    ws_port: int = 0
    wss_port: int = 0
    paths: list[str] = field(default_factory=list)
    received: list[bytes] = field(default_factory=list)
    _loop: asyncio.AbstractEventLoop | None = None

    def received_bytes(self) -> bytes:
        return b"\n".join(self.received)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        ws = WSConnection(ConnectionType.SERVER)
        try:
            while True:
                data = await reader.read(65536)
                ws.receive_data(data or None)
                for event in ws.events():
                    if isinstance(event, Request):
                        self.paths.append(event.target)
                        writer.write(ws.send(AcceptConnection()))
                    elif isinstance(event, Message):
                        content = event.data.encode() if isinstance(event.data, str) else bytes(event.data)
                        self.received.append(content)
                        writer.write(ws.send(event))  # echo, same type
                    elif isinstance(event, Ping):
                        writer.write(ws.send(event.response()))
                    elif isinstance(event, CloseConnection):
                        writer.write(ws.send(event.response()))
                        await writer.drain()
                        return
                await writer.drain()
                if not data:
                    return
        except (ConnectionError, OSError, Exception):  # a peer that vanished mid-frame: just stop
            return
        finally:
            writer.close()

    def start(self, cert_file: Path, key_file: Path) -> EchoServer:
        ready = threading.Event()
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert_file, key_file)

        async def main() -> None:
            plain = await asyncio.start_server(self._serve, "127.0.0.1", 0)
            secure = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=context)
            self.ws_port = plain.sockets[0].getsockname()[1]
            self.wss_port = secure.sockets[0].getsockname()[1]
            ready.set()
            async with plain, secure:
                await asyncio.gather(plain.serve_forever(), secure.serve_forever())

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            try:
                self._loop.run_until_complete(main())
            except (asyncio.CancelledError, RuntimeError):
                pass

        threading.Thread(target=run, daemon=True).start()
        if not ready.wait(10):
            raise RuntimeError("the WebSocket echo server did not start")
        return self

    def stop(self) -> None:
        if self._loop is not None:
            loop = self._loop
            loop.call_soon_threadsafe(lambda: [task.cancel() for task in asyncio.all_tasks(loop)])


@dataclass
class ClientResult:
    """What a WebSocket client saw: the handshake status, echoes received, and whether the proxy closed on it."""

    status: int = 0
    echoes: list[bytes] = field(default_factory=list)
    closed: bool = False
    """The connection ended without a close handshake the client asked for (closed by the proxy or the peer)."""


def _read_events(sock: socket.socket | ssl.SSLSocket, ws: WSConnection, wait: float) -> list[Event]:
    sock.settimeout(wait)
    try:
        data = sock.recv(65536)
    except TimeoutError:
        return []
    except (ConnectionError, ssl.SSLError, OSError):
        data = b""
    ws.receive_data(data or None)
    events = list(ws.events())
    if not data:
        events.append(CloseConnection(code=1006))
    return events


def ws_exchange(proxy_host: str, proxy_port: int, target_host: str, target_port: int, messages: list[str | bytes],
                *, secure: bool, ca_file: str = "", path: str = "/live", wait: float = 2.0) -> ClientResult:
    """Open a WebSocket to `target_host:target_port` through the HTTP proxy, send each message, collect echoes.

    After each message the client waits up to `wait` seconds for its echo (a dropped message has none).
    """
    result = ClientResult()
    raw = socket.create_connection((proxy_host, proxy_port), timeout=10)
    sock: socket.socket | ssl.SSLSocket = raw
    authority = f"{target_host}:{target_port}"
    ws = WSConnection(ConnectionType.CLIENT)
    try:
        handshake = ws.send(Request(host=authority, target=path))
        if secure:
            raw.sendall(f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n".encode())
            head = raw.recv(4096)
            if not head.startswith(b"HTTP/1.1 200"):
                result.status = int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/") else 0
                return result
            context = ssl.create_default_context(cafile=ca_file)
            sock = context.wrap_socket(raw, server_hostname=target_host)
        else:  # absolute form, as with an http proxy
            handshake = handshake.replace(f"GET {path} ".encode(), f"GET http://{authority}{path} ".encode(), 1)
        sock.sendall(handshake)
        while not result.status:
            events = _read_events(sock, ws, 10)
            for event in events:
                if isinstance(event, AcceptConnection):
                    result.status = 101
                elif isinstance(event, RejectConnection):
                    result.status = event.status_code
                elif isinstance(event, CloseConnection):
                    result.closed = True
                    return result
            if not events:
                return result
        if result.status != 101:
            return result
        for message in messages:
            event: Event = TextMessage(message) if isinstance(message, str) else BytesMessage(message)
            try:
                sock.sendall(ws.send(event))
            except (ConnectionError, ssl.SSLError, OSError):
                result.closed = True
                return result
            for event in _read_events(sock, ws, wait):
                if isinstance(event, Message):
                    data = event.data
                    result.echoes.append(data.encode() if isinstance(data, str) else bytes(data))
                elif isinstance(event, CloseConnection):
                    result.closed = True
                    return result
        try:
            sock.sendall(ws.send(CloseConnection(code=1000)))
        except (ConnectionError, ssl.SSLError, OSError):
            result.closed = True
        return result
    finally:
        sock.close()
