"""The seed tools' own collectors, fed the real captures by real HTTP clients (requests and urllib)."""

from __future__ import annotations

import json
import urllib.request

import pytest
import requests

from .conftest import CollectorServer, bad_reasons, good_events, load_capture

SERVERLESS = [
    "serverless3-01",
    "serverless3-02",
    "serverless3-print-with-DO_NOT_TRACK=1",
    "serverless3-print-with-HTTP_PROXY-set-went-direct",
    "serverless3-tls-real-host",
]


def _urllib_post(url: str, headers: list[tuple[str, str]], body: bytes) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, headers=dict(headers), method="POST")
    request.remove_header("Host")
    with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 (127.0.0.1 only)
        return response.status, response.read()


@pytest.mark.parametrize("capture", SERVERLESS)
def test_serverless_v3_gets_a_2xx_so_it_clears_its_cache(server: CollectorServer, capture: str) -> None:
    method, path, headers, body = load_capture(capture)
    status, _ = _urllib_post(server.url + path, [h for h in headers if h[0].lower() != "host"], body)
    assert status == 200
    (event,) = good_events(server, tool="serverless")
    assert event["collector"] == "serverless-v3"
    assert event["anonymous_id"] == "0ba1fd90-e64a-11f1-a508-991b2c0cd370"
    assert event["name"] in ("print", "deploy")
    assert event["properties"]["outcome"] == "failure"


def test_serverless_v3_real_host_name_routes_by_host(server: CollectorServer) -> None:
    _, path, headers, body = load_capture("serverless3-tls-real-host")
    response = requests.post(server.url + path, data=body, headers=dict(headers), timeout=5)
    assert response.status_code == 200
    assert good_events(server)[0]["collector"] == "serverless-v3"


@pytest.mark.parametrize(
    "capture",
    ["localstack-cli_cmd-config-show", "localstack-cli_cmd-with-DO_NOT_TRACK=1", "localstack-events-bus"],
)
def test_localstack_events(server: CollectorServer, capture: str) -> None:
    method, path, headers, body = load_capture(capture)
    response = requests.request(method, server.url + path, data=body, headers=dict(headers), timeout=5)
    assert response.status_code == 200
    (event,) = good_events(server, tool="localstack")
    assert event["anonymous_id"] == dict((k.lower(), v) for k, v in headers)["localstack-session-id"]


def test_localstack_session_keeps_tracking_enabled(server: CollectorServer) -> None:
    method, path, headers, body = load_capture("localstack-session")
    response = requests.request(method, server.url + path, data=body, headers=dict(headers), timeout=5)
    # The CLI stops tracking unless it reads exactly this.
    assert (response.status_code, response.json()) == (200, {"track_events": True})
    (event,) = good_events(server, event="session")
    assert event["properties"]["api_key"] == "ls-FAKE-TOKEN-1234"
    assert event["distinct_id"] == "gen_b2e28554-7d0"


def test_localstack_through_the_collector_as_http_proxy(server: CollectorServer) -> None:
    # The capture was an absolute-form request to a proxy; requests does the same with `proxies`.
    method, path, headers, body = load_capture("localstack-cli_cmd-via-HTTP_PROXY")
    proxies = {"http": server.url}
    response = requests.request(method, path, data=body, headers=dict(headers), proxies=proxies, timeout=5)
    assert response.status_code == 200
    (event,) = good_events(server)
    assert event["collector"] == "localstack"
    assert inspect_request_host(server) == "analytics.localstack.cloud"


def inspect_request_host(server: CollectorServer) -> str:
    return str(requests.get(f"{server.url}/micro/good", timeout=5).json()[0]["request"]["host"])


@pytest.mark.parametrize("capture", ["sst-v2.49.8-CLI_COMMAND", "sst-v2.49.8-CLI_COMMAND_SUCCEEDED"])
def test_sst_v2_gets_exactly_200(server: CollectorServer, capture: str) -> None:
    method, path, headers, body = load_capture(capture)
    # The capture was chunked: send it chunked again (a generator body makes requests do so).
    response = requests.request(method, server.url + path, data=iter([body[:50], body[50:]]), headers=dict(headers))
    assert response.status_code == 200
    (event,) = good_events(server, tool="sst")
    assert event["name"] == capture.rsplit("-", 1)[1]
    assert event["anonymous_id"].startswith("8aff786d")
    assert event["context"]["environment"]["sstVersion"] == "2.49.8"


def test_serverless_v4_bulk_publish(server: CollectorServer) -> None:
    body = {
        "events": [{"source": "cli", "event": {"event": "command.run", "userId": "u1", "timestamp": 1700000000000}}]
    }
    headers = {"Authorization": "Bearer fake-access-key", "Host": "core.serverless.com"}
    response = requests.post(f"{server.url}/api/events/publish/bulk", json=body, headers=headers, timeout=5)
    assert response.status_code == 200
    (event,) = good_events(server, collector="serverless-v4")
    assert (event["name"], event["distinct_id"]) == ("command.run", "u1")


@pytest.mark.parametrize(
    ("path", "body", "headers", "status"),
    [
        ("/", b"[{]", {"Host": "sp-notifications-and-metrics-v1.serverless-platform.com"}, 400),
        ("/", b'{"command": "x"}', {"Host": "sp-notifications-and-metrics-v1.serverless-platform.com"}, 400),
        ("/v1/events", b'{"events": [{"payload": {}}]}', {}, 400),
        ("/v1/session", b"nope", {}, 400),
        ("/events", b'{"events": [{}]}', {}, 400),
        ("/api/events/publish/bulk", b"{}", {}, 401),
    ],
)
def test_seed_tool_bad_requests(
    server: CollectorServer, path: str, body: bytes, headers: dict[str, str], status: int
) -> None:
    response = requests.post(server.url + path, data=body, headers=headers, timeout=5)
    assert response.status_code == status
    assert len(bad_reasons(server)) == 1
    assert json.loads(response.content)
