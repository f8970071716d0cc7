"""The standalone collector server: routing, recording, HTTP details and its CLI pair."""

from __future__ import annotations

import argparse
import socket

import pytest
import requests

from telemetry_audit.collectors.server import (
    CollectorServer,
    CollectorServerError,
    add_arguments,
    make_server,
    parse_listen,
)
from telemetry_audit.collectors.store import EventStore
from telemetry_audit.model import Request

from .conftest import inspect


def test_unknown_path_is_404_and_recorded_bad(server: CollectorServer) -> None:
    response = requests.post(f"{server.url}/where/is/this", data=b"secret-ish", timeout=5)
    assert response.status_code == 404
    assert response.json() == {"error": "no collector emulates POST /where/is/this"}
    (bad,) = inspect(server, "bad")
    assert bad["request"]["body_preview"] == "secret-ish"


def test_on_request_hook_sees_every_collector_request_and_its_result_is_stored() -> None:
    seen: list[Request] = []

    def hook(request: Request) -> dict[str, str]:
        seen.append(request)
        return {"action": "log"}

    with CollectorServer(on_request=hook) as srv:
        requests.post(f"{srv.url}/v1/track", json={"userId": "u", "event": "e"}, timeout=5)
        requests.get(f"{srv.url}/micro/all", timeout=5)
        (event,) = inspect(srv, "good")
    assert [r.path for r in seen] == ["/v1/track"]
    assert event["decision"] == {"action": "log"}
    assert event["request"]["collector"] == "segment"
    assert "user_agent" in event["request"]


def test_query_values_are_not_stored(server: CollectorServer) -> None:
    requests.post(
        f"{server.url}/mp/collect",
        params={"measurement_id": "G-1", "api_secret": "TOPSECRET"},
        json={"client_id": "c", "events": [{"name": "e"}]},
        timeout=5,
    )
    text = requests.get(f"{server.url}/micro/good", timeout=5).text  # /micro/all holds only counts, as in Micro
    assert "TOPSECRET" not in text
    assert "api_secret" in text  # the key is kept, the value is not


def test_oversized_body_is_refused(server: CollectorServer) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"POST /v1/batch HTTP/1.1\r\nHost: x\r\nContent-Length: 999999999\r\n\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.1 413")


def test_persistent_store_survives_a_restart(tmp_path: object) -> None:
    path = f"{tmp_path}/events.sqlite"
    with CollectorServer(EventStore(path)) as srv:
        requests.post(f"{srv.url}/v1/track", json={"userId": "u", "event": "e"}, timeout=5)
    with CollectorServer(EventStore(path)) as srv:
        assert inspect(srv)["good"] == 1


def test_port_in_use_is_a_user_error() -> None:
    with CollectorServer() as srv, pytest.raises(CollectorServerError, match="cannot listen on 127.0.0.1"):
        make_server("127.0.0.1", srv.port, EventStore())


@pytest.mark.parametrize(
    ("value", "expected"),
    [("127.0.0.1:9090", ("127.0.0.1", 9090)), ("9191", ("127.0.0.1", 9191)), ("[::1]:80", ("::1", 80))],
)
def test_parse_listen(value: str, expected: tuple[str, int]) -> None:
    assert parse_listen(value) == expected


def test_add_arguments() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--listen", "127.0.0.1:0", "--store", "x.sqlite"])
    assert (args.listen, args.store) == (("127.0.0.1", 0), "x.sqlite")
    with pytest.raises(SystemExit):
        parser.parse_args(["--listen", "nope"])
