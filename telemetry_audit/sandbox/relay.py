"""The sandbox's only ways out, both through a relay that runs outside it.

The relay is a CONNECT proxy on a Unix socket in the run's private directory: path-based Unix sockets are not
tied to a network namespace, so processes inside reach it while they have no route. It connects to the host's
loopback services (a local database, LocalStack on localhost:4566) and, only in online mode, to the destinations
the auditing proxy forwards to, itself through the user's own HTTP(S) proxy when one is configured. The audited
command never talks to it directly: inside, loopback bridges listen on the host's loopback ports and the proxy
alone forwards upstream.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from telemetry_audit.sandbox.names import LOOPBACK_ALIAS

_MAX_HEADER = 8192
_CONNECT_TIMEOUT = 15.0


class RelayRefused(OSError):
    """The relay would not (or could not) connect where it was asked to."""


def connect_line(host: str, port: int) -> bytes:
    """The request the relay expects: a plain HTTP CONNECT."""
    authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n".encode("ascii")


def parse_connect(head: bytes) -> tuple[str, int]:
    """(host, port) of a CONNECT request head; ValueError naming what is wrong."""
    try:
        line = head.split(b"\r\n", 1)[0].decode("ascii")
    except UnicodeDecodeError:
        raise ValueError("request line is not ASCII") from None
    parts = line.split(" ")
    if len(parts) != 3 or parts[0] != "CONNECT" or not parts[2].startswith("HTTP/1."):
        raise ValueError(f"not a CONNECT request: {line[:80]!r}")
    host, sep, port = parts[1].rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"bad CONNECT target: {parts[1][:80]!r}")
    return host, int(port)


def read_head(sock: socket.socket) -> tuple[bytes, bytes]:
    """Read up to the blank line ending an HTTP head; return (head, bytes already read past it)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("connection closed before the end of the request head")
        data += chunk
        if len(data) > _MAX_HEADER:
            raise ValueError("request head too long")
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest


PORTS_REQUEST = b"GET /loopback-ports HTTP/1.1\r\n\r\n"
"""Asks the relay which ports listen on the host's loopback now (answered with `8080,4566`)."""


def host_loopback_ports(relay_path: str, timeout: float = 5.0) -> list[int]:
    """The host's listening loopback ports, as the relay outside sees them."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(relay_path)
        sock.sendall(PORTS_REQUEST)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise ValueError(f"relay answered {head[:80]!r}")
    return [int(p) for p in body.decode("ascii").split(",") if p.strip()]


def open_through_relay(relay_path: str, host: str, port: int, timeout: float = _CONNECT_TIMEOUT) -> socket.socket:
    """A connected stream to (host, port) through the relay; RelayRefused with the relay's answer otherwise."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect(relay_path)
        sock.sendall(connect_line(host, port))
        head, rest = read_head(sock)
        status = head.split(b"\r\n", 1)[0].decode("ascii", "replace")
        if not status.startswith("HTTP/1.1 200"):
            raise RelayRefused(f"relay refused {host}:{port}: {status}")
        if rest:
            raise RelayRefused("relay sent data before the tunnel opened")
        sock.settimeout(None)
        return sock
    except BaseException:
        sock.close()
        raise


def pipe(a: socket.socket, b: socket.socket) -> None:
    """Copy both ways until both sides are done, then close both (blocking; run in a thread)."""

    def one_way(src: socket.socket, dst: socket.socket) -> None:
        try:
            while chunk := src.recv(65536):
                dst.sendall(chunk)
        except OSError:
            pass
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    other = threading.Thread(target=one_way, args=(b, a), daemon=True)
    other.start()
    one_way(a, b)
    other.join()
    a.close()
    b.close()


def is_loopback(host: str) -> bool:
    if host.lower() in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class RelayPolicy:
    """Where the relay may connect."""

    allow_remote: bool = False
    """Online mode: any destination (the auditing proxy decided already); otherwise loopback services only."""
    upstream_proxy: str = ""
    """`http://host:port` of the user's own proxy: remote destinations are tunnelled through it."""


class Relay:
    """The relay server (outside the sandbox): one thread per connection, stopped with `close()`."""

    def __init__(self, path: str, policy: RelayPolicy) -> None:
        self.path = path
        self.policy = policy
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._server.bind(path)
        os.chmod(path, 0o600)
        self._server.listen(64)
        self._closed = False
        self._thread = threading.Thread(target=self._serve, name="telemetry-audit-relay", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._closed = True
        try:
            self._server.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._server.close()
        self._thread.join(timeout=2)
        try:
            os.unlink(self.path)
        except OSError:
            pass

    def _serve(self) -> None:
        while not self._closed:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(client,), daemon=True).start()

    def _handle(self, client: socket.socket) -> None:
        try:
            client.settimeout(_CONNECT_TIMEOUT)
            head, rest = read_head(client)
            if head.startswith(PORTS_REQUEST.split(b"\r\n", 1)[0]):
                ports = ",".join(str(p) for p in loopback_listening_ports())
                client.sendall(b"HTTP/1.1 200 OK\r\n\r\n" + ports.encode("ascii"))
                client.close()
                return
            host, port = parse_connect(head)
            upstream = self._connect(host, port)
        except (OSError, ValueError) as e:
            status = "403 Forbidden" if isinstance(e, RelayRefused) else "502 Bad Gateway"
            try:
                client.sendall(f"HTTP/1.1 {status}\r\nX-Relay-Error: {str(e)[:200]}\r\n\r\n".encode("latin-1",
                                                                                                    "replace"))
            except OSError:
                pass
            client.close()
            return
        client.settimeout(None)
        client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        if rest:
            upstream.sendall(rest)
        pipe(client, upstream)

    def _connect(self, host: str, port: int) -> socket.socket:
        if is_loopback(host):
            return socket.create_connection((host, port), timeout=_CONNECT_TIMEOUT)
        if not self.policy.allow_remote:
            raise RelayRefused(f"offline: {host}:{port} is not a loopback service")
        if not self.policy.upstream_proxy:
            sock = socket.create_connection((host, port), timeout=_CONNECT_TIMEOUT)
            sock.settimeout(None)
            return sock
        return _through_proxy(self.policy.upstream_proxy, host, port)


def _through_proxy(proxy_url: str, host: str, port: int) -> socket.socket:
    """A tunnel to (host, port) through an HTTP proxy's CONNECT."""
    parts = urlsplit(proxy_url if "://" in proxy_url else f"http://{proxy_url}")
    if not parts.hostname:
        raise RelayRefused(f"bad upstream proxy {proxy_url!r}")
    sock = socket.create_connection((parts.hostname, parts.port or 8080), timeout=_CONNECT_TIMEOUT)
    try:
        sock.sendall(connect_line(host, port))
        head, rest = read_head(sock)
        status = head.split(b"\r\n", 1)[0].decode("ascii", "replace")
        if " 200" not in status:
            raise RelayRefused(f"upstream proxy refused {host}:{port}: {status}")
        sock.settimeout(None)
        return sock
    except BaseException:
        sock.close()
        raise


class LoopbackBridges:
    """Inside the sandbox: listeners on 127.0.0.1:PORT for the host's loopback services, each tunnelled through
    the relay to the same port of the host; with `via_proxy` (audited loopback) through the proxy instead, which
    forwards to the host's port only in online mode."""

    def __init__(self, relay_path: str, ports: Iterable[int], *, via_proxy: bool = False) -> None:
        self.relay_path = relay_path
        self.via_proxy = via_proxy
        self.ports: list[int] = []
        self._tried: set[int] = set()
        self._servers: list[socket.socket] = []
        self._stop = threading.Event()
        self.add(ports)

    def add(self, ports: Iterable[int]) -> None:
        """Bridge each port not tried yet; a port already taken inside (by the command itself) is left to it."""
        for port in sorted(set(ports) - self._tried):
            self._tried.add(port)
            server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                server.bind(("127.0.0.1", port))
            except OSError:
                server.close()
                continue
            server.listen(64)
            self._servers.append(server)
            self.ports.append(port)
            threading.Thread(target=self._serve, args=(server, port), daemon=True).start()

    def follow_host(self, interval: float = 0.5) -> None:
        """Keep bridging services that start listening on the host during the run (a container whose port
        is published after the command started it, say): asks the relay every `interval` seconds."""

        def poll() -> None:
            while not self._stop.wait(interval):
                try:
                    self.add(host_loopback_ports(self.relay_path))
                except (OSError, ValueError):
                    continue

        threading.Thread(target=poll, name="telemetry-audit-loopback-ports", daemon=True).start()

    def _serve(self, server: socket.socket, port: int) -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return
            threading.Thread(target=self._bridge, args=(client, port), daemon=True).start()

    def _bridge(self, client: socket.socket, port: int) -> None:
        try:
            if self.via_proxy:
                upstream = socket.create_connection((LOOPBACK_ALIAS, port), timeout=_CONNECT_TIMEOUT)
                upstream.settimeout(None)
            else:
                upstream = open_through_relay(self.relay_path, "127.0.0.1", port)
        except (OSError, ValueError):
            client.close()
            return
        pipe(client, upstream)

    def close(self) -> None:
        self._stop.set()
        for server in self._servers:
            try:
                server.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            server.close()


def loopback_listening_ports(tables: Iterable[str] = ("/proc/net/tcp", "/proc/net/tcp6")) -> list[int]:
    """Ports with a listening TCP socket on a loopback or wildcard address of this network namespace."""
    ports: set[int] = set()
    for table in tables:
        try:
            with open(table, encoding="ascii") as stream:
                next(stream, None)
                for line in stream:
                    fields = line.split()
                    if len(fields) < 4 or fields[3] != "0A":  # 0A: TCP_LISTEN
                        continue
                    address, _, port = fields[1].rpartition(":")
                    if _loopback_or_any(address):
                        ports.add(int(port, 16))
        except OSError:
            continue
    return sorted(ports)


def _loopback_or_any(hex_address: str) -> bool:
    """/proc/net/tcp addresses are little-endian hex words: 0100007F is 127.0.0.1, all zeros is any."""
    if set(hex_address) == {"0"}:
        return True
    if len(hex_address) == 8:
        return hex_address.endswith("7F")
    # IPv6: ::1, or an IPv4-mapped 127.x address
    return hex_address == "00000000000000000000000001000000" or (
        hex_address.startswith("0000000000000000FFFF0000") and hex_address.endswith("7F"))
