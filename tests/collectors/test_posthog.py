"""PostHog, driven by the official posthog client, plus posthog-js' encodings and SST v3/v4's captures."""

from __future__ import annotations

import base64
import gzip
import json

import pytest
import requests
from posthog import Posthog

from telemetry_audit.collectors import find_collector
from telemetry_audit.collectors.posthog import PostHogCollector
from telemetry_audit.collectors.server import CollectorServer
from telemetry_audit.decoders import decode_request
from telemetry_audit.model import Request

from .conftest import bad_reasons, good_events, load_capture


@pytest.mark.parametrize("gzip_body", [False, True])
def test_official_client_capture_is_accepted(server: CollectorServer, gzip_body: bool) -> None:
    errors: list[Exception] = []
    client = Posthog(
        "phc_test",
        host=server.url,
        sync_mode=True,
        gzip=gzip_body,
        max_retries=0,
        on_error=lambda e, batch: errors.append(e),
        enable_local_evaluation=False,
    )
    client.capture("cli.start", distinct_id="user-1", properties={"args": ["deploy"], "cpu_count": 2})
    client.flush()
    client.shutdown()

    assert errors == []
    (event,) = good_events(server, collector="posthog")
    assert (event["name"], event["distinct_id"], event["tool"]) == ("cli.start", "user-1", "posthog")
    assert event["properties"]["args"] == ["deploy"]
    assert event["context"]["api_key"] == "phc_test"
    assert event["context"]["$lib"] == "posthog-python"
    assert event["timestamp"]


def test_official_client_feature_flags_get_an_empty_answer(server: CollectorServer) -> None:
    client = Posthog("phc_test", host=server.url, sync_mode=True, max_retries=0, enable_local_evaluation=False)
    assert client.evaluate_flags("user-1").get_flag("new-ui") is None
    client.shutdown()
    (event,) = good_events(server, event="$flags")
    assert event["distinct_id"] == "user-1"


def _js_event() -> list[dict[str, object]]:
    return [{"event": "$pageview", "properties": {"token": "phc_js", "distinct_id": "d1", "$lib": "web"}}]


def test_posthog_js_gzip_js_body(server: CollectorServer) -> None:
    body = gzip.compress(json.dumps(_js_event()).encode())
    response = requests.post(
        f"{server.url}/e/",
        params={"compression": "gzip-js", "ver": "1.0"},
        data=body,
        headers={"Content-Type": "text/plain"},
        timeout=5,
    )
    assert response.json() == {"status": 1}
    assert [e["name"] for e in good_events(server)] == ["$pageview"]


def test_posthog_js_base64_form_body(server: CollectorServer) -> None:
    data = base64.b64encode(json.dumps(_js_event()).encode()).decode()
    response = requests.post(f"{server.url}/i/v0/e/", params={"compression": "base64"}, data={"data": data}, timeout=5)
    assert response.json() == {"status": 1}
    (event,) = good_events(server)
    assert (event["distinct_id"], event["context"]["api_key"]) == ("d1", "phc_js")


@pytest.mark.parametrize("capture", ["sst-v4.17.1-posthog-batch", "sst-v4.17.1-telemetry-disable-cmd-offline"])
def test_sst_v4_captures_replayed_by_path_are_attributed_to_sst(server: CollectorServer, capture: str) -> None:
    method, path, headers, body = load_capture(capture)
    response = requests.request(method, server.url + path, headers=dict(headers), data=body, timeout=5)
    assert (response.status_code, response.json()) == (200, {"status": 1})
    events = good_events(server, tool="sst")
    assert [e["name"] for e in events] == ["cli.start", "cli.error"]
    assert events[1]["properties"]["error"] == "Could not install pulumi"


def test_sst_v4_capture_by_host_uses_the_sst_emulator(server: CollectorServer) -> None:
    method, path, headers, body = load_capture("sst-v4.17.1-posthog-batch")
    request = Request.from_url(method, "https://telemetry.ion.sst.dev" + path, headers, body)
    collector = find_collector(request)
    assert collector is not None and collector.name == "sst-ion"
    assert {e.tool for e in collector.handle(decode_request(request)).events} == {"sst"}


@pytest.mark.parametrize(
    ("body", "status", "reason"),
    [
        (b"{oops", 400, "Malformed request data: invalid JSON"),
        (b'{"batch": [{"event": "x", "distinct_id": "d"}]}', 401, "API key not provided"),
        (b'{"api_key": "k", "batch": [{"distinct_id": "d"}]}', 400, "Invalid payload: batch[0]: All events must have"),
    ],
)
def test_bad_requests_get_posthogs_errors(server: CollectorServer, body: bytes, status: int, reason: str) -> None:
    response = requests.post(f"{server.url}/batch/", data=body, timeout=5)
    assert response.status_code == status
    assert response.json()["detail"].startswith(reason)
    assert bad_reasons(server)[0].startswith(reason)


def test_bare_batch_path_is_not_posthogs_by_path_alone() -> None:
    request = Request.from_url("POST", "http://127.0.0.1/batch", {}, b'{"api_key": "k", "events": []}')
    assert not PostHogCollector().matches_path(decode_request(request))
    assert PostHogCollector().matches(Request.from_url("POST", "https://us.i.posthog.com/batch", {}, b""))
