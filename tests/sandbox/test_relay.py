"""The relay outside the sandbox: loopback services always, anything else only online; bad requests refused."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from telemetry_audit.sandbox.relay import (
    LoopbackBridges,
    Relay,
    RelayPolicy,
    RelayRefused,
    host_loopback_ports,
    loopback_listening_ports,
    open_through_relay,
    parse_connect,
)


@pytest.fixture
def echo_port() -> Iterator[int]:
    """A TCP echo service on the host's 127.0.0.1."""
    server = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                while data := conn.recv(4096):
                    conn.sendall(b"echo:" + data)

    threading.Thread(target=serve, daemon=True).start()
    yield int(server.getsockname()[1])
    server.close()


@pytest.fixture
def relay_path(tmp_path: Path) -> Iterator[str]:
    relay = Relay(str(tmp_path / "relay.sock"), RelayPolicy(allow_remote=False))
    yield relay.path
    relay.close()


def _roundtrip(sock: socket.socket, data: bytes) -> bytes:
    with sock:
        sock.sendall(data)
        return sock.recv(100)


def test_loopback_services_are_relayed(relay_path: str, echo_port: int) -> None:
    assert _roundtrip(open_through_relay(relay_path, "127.0.0.1", echo_port), b"hi") == b"echo:hi"


def test_offline_anything_but_loopback_is_refused_before_any_connection(relay_path: str) -> None:
    with pytest.raises(RelayRefused, match="403 Forbidden"):
        open_through_relay(relay_path, "api.segment.io", 443)


def test_the_relay_socket_is_private(relay_path: str) -> None:
    assert Path(relay_path).stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize("head", [
    b"GET / HTTP/1.1", b"CONNECT host HTTP/1.1", b"CONNECT host:0 HTTP/1.1", b"CONNECT host:99999 HTTP/1.1",
    b"CONNECT :443 HTTP/1.1", b"CONNECT host:443 SPDY/3", b"CONNECT \xff:1 HTTP/1.1", b"",
])
def test_bad_connect_requests_are_named(head: bytes) -> None:
    with pytest.raises(ValueError, match="CONNECT|ASCII"):
        parse_connect(head)


@pytest.mark.parametrize(("head", "target"), [
    (b"CONNECT api.segment.io:443 HTTP/1.1\r\nHost: x", ("api.segment.io", 443)),
    (b"CONNECT [::1]:8080 HTTP/1.1", ("::1", 8080)),
])
def test_good_connect_requests(head: bytes, target: tuple[str, int]) -> None:
    assert parse_connect(head) == target


def test_garbage_gets_a_502_and_a_closed_connection(relay_path: str) -> None:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(relay_path)
        sock.sendall(b"\x16\x03\x01 not http\r\n\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.1 502")


def test_a_loopback_port_already_taken_is_skipped_not_an_error(relay_path: str, echo_port: int) -> None:
    # Inside the sandbox the ports are free; here the service itself holds it (the tunnel is tested end to end).
    bridges = LoopbackBridges(relay_path, [echo_port])
    assert bridges.ports == []  # the port is taken here (by the service itself): skipped, not an error
    bridges.close()


def test_listening_loopback_ports_are_read_from_proc(tmp_path: Path) -> None:
    table = tmp_path / "tcp"
    table.write_text(
        "  sl  local_address rem_address   st\n"
        "   0: 0100007F:1F90 00000000:0000 0A\n"    # 127.0.0.1:8080 listening
        "   1: 00000000:11D7 00000000:0000 0A\n"    # 0.0.0.0:4567 listening
        "   2: 0A00020F:0016 00000000:0000 0A\n"    # 10.0.2.15:22 listening, not loopback
        "   3: 0100007F:1F91 0100007F:D431 01\n"    # established, not listening
        "garbage\n"
    )
    assert loopback_listening_ports([str(table), str(tmp_path / "missing")]) == [4567, 8080]


def test_online_remote_destinations_go_through_the_users_own_proxy(tmp_path: Path, echo_port: int) -> None:
    """A stand-in corporate proxy on 127.0.0.1 records the CONNECT target and tunnels to the echo service (nothing
    is resolved or sent outside)."""
    targets: list[bytes] = []
    corporate = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        conn, _ = corporate.accept()
        with conn:
            head = b""
            while b"\r\n\r\n" not in head:
                head += conn.recv(1024)
            targets.append(head.split(b"\r\n", 1)[0])
            conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            with socket.create_connection(("127.0.0.1", echo_port)) as service:
                service.sendall(conn.recv(100))
                conn.sendall(service.recv(100))

    threading.Thread(target=serve, daemon=True).start()
    policy = RelayPolicy(allow_remote=True, upstream_proxy=f"http://127.0.0.1:{corporate.getsockname()[1]}")
    relay = Relay(str(tmp_path / "online.sock"), policy)
    try:
        assert _roundtrip(open_through_relay(relay.path, "api.segment.io", 443), b"tls") == b"echo:tls"
    finally:
        relay.close()
        corporate.close()
    assert targets == [b"CONNECT api.segment.io:443 HTTP/1.1"]


def test_a_refusing_corporate_proxy_is_reported(tmp_path: Path) -> None:
    corporate = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        conn, _ = corporate.accept()
        with conn:
            conn.recv(1024)
            conn.sendall(b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n")

    threading.Thread(target=serve, daemon=True).start()
    policy = RelayPolicy(allow_remote=True, upstream_proxy=f"127.0.0.1:{corporate.getsockname()[1]}")
    relay = Relay(str(tmp_path / "online.sock"), policy)
    try:
        with pytest.raises(RelayRefused, match="403"):
            open_through_relay(relay.path, "api.segment.io", 443)
    finally:
        relay.close()
        corporate.close()


def test_the_relay_tells_which_host_loopback_ports_listen(relay_path: str, echo_port: int) -> None:
    assert echo_port in host_loopback_ports(relay_path)
