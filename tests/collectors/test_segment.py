"""Segment, driven by the official segment-analytics-python client."""

from __future__ import annotations

import gzip
import json

import pytest
import requests
from segment.analytics.client import Client

from telemetry_audit.collectors.segment import SegmentCollector, ServerlessV1Collector
from telemetry_audit.decoders import decode_request
from telemetry_audit.model import Request

from .conftest import CollectorServer, bad_reasons, decoded, good_events, inspect


@pytest.mark.parametrize("gzip_body", [False, True])
def test_official_client_batches_are_accepted_and_normalised(server: CollectorServer, gzip_body: bool) -> None:
    errors: list[Exception] = []
    client = Client(
        "wk_test",
        host=server.url,
        sync_mode=True,
        gzip=gzip_body,
        max_retries=0,
        on_error=lambda e, batch: errors.append(e),
    )
    client.track("user-1", "Deploy Finished", {"stage": "dev"}, context={"app": {"name": "cli"}})
    client.identify("user-1", {"plan": "free"})
    client.page(anonymous_id="anon-1", name="Docs", properties={"path": "/docs"})
    client.flush()

    assert errors == []
    events = good_events(server, collector="segment")
    assert [(e["name"], e["distinct_id"], e["anonymous_id"]) for e in events] == [
        ("Deploy Finished", "user-1", None),
        ("identify", "user-1", None),
        ("page", None, "anon-1"),
    ]
    assert events[0]["properties"] == {"stage": "dev"}
    assert events[0]["context"]["app"] == {"name": "cli"}
    assert events[0]["context"]["library"]["name"] == "analytics-python"
    assert events[1]["properties"] == {"plan": "free"}


def test_single_track_endpoint() -> None:
    body = json.dumps({"userId": "u", "event": "Signed Up", "properties": {"a": 1}, "timestamp": 1700000000}).encode()
    response = SegmentCollector().handle(decoded("POST", "https://api.segment.io/v1/track", {}, body))
    assert response.status == 200 and json.loads(response.body) == {"success": True}
    (event,) = response.events
    assert (event.name, event.distinct_id, event.timestamp) == ("Signed Up", "u", "2023-11-14T22:13:20.000Z")


def test_invalid_messages_are_dropped_like_segment_does() -> None:
    body = json.dumps({"batch": [{"type": "track", "userId": "u", "event": "ok"}, {"type": "track", "event": "x"}]})
    response = SegmentCollector().handle(decoded("POST", "https://api.segment.io/v1/batch", {}, body.encode()))
    assert response.status == 200
    assert [e.name for e in response.events] == ["ok"]
    assert response.bad_reason == "batch[1]: userId or anonymousId is required"


def test_bad_json_gets_400_and_a_bad_event(server: CollectorServer) -> None:
    response = requests.post(f"{server.url}/v1/batch", data=b"{not json", timeout=5)
    assert response.status_code == 400
    assert response.json()["success"] is False
    assert response.json()["message"].startswith("Invalid JSON")
    assert bad_reasons(server)[0].startswith("Invalid JSON")


def test_oversized_payload_is_rejected() -> None:
    body = gzip.compress(json.dumps({"batch": [], "pad": "x" * 600_000}).encode())
    request = Request.from_url("POST", "https://api.segment.io/v1/batch", {"Content-Encoding": "gzip"}, body)
    response = SegmentCollector().handle(decode_request(request))
    assert (response.status, response.bad_reason) == (400, "Payload too large")


def test_serverless_v1_framework_endpoint_is_attributed_to_serverless() -> None:
    body = json.dumps({"userId": "0ba1", "event": "framework_stat", "properties": {"command": {"name": "deploy"}}})
    request = Request.from_url("POST", "https://serverless.com/api/framework/track", {}, body.encode())
    collector = ServerlessV1Collector()
    assert collector.matches(request)
    (event,) = collector.handle(decode_request(request)).events
    assert (event.tool, event.collector, event.name) == ("serverless", "serverless-v1", "framework_stat")


def test_a_batch_beyond_2500_events_keeps_the_first_2500(server: CollectorServer) -> None:
    batch = [{"type": "track", "userId": "u", "event": f"e{i}"} for i in range(2503)]
    response = requests.post(f"{server.url}/v1/batch", json={"batch": batch}, timeout=10)
    assert response.status_code == 200 and response.json() == {"success": True}
    assert len(inspect(server, "good", limit="10000")) == 2500
    assert bad_reasons(server, collector="segment") == [
        f"batch[{i}]: batch holds more than 2500 events" for i in (2500, 2501, 2502)
    ]


@pytest.mark.parametrize(
    ("path", "size", "status"),
    [("/v1/track", 33 * 1024, 400), ("/v1/track", 31 * 1024, 200), ("/v1/batch", 501 * 1024, 400)],
)
def test_size_limits_per_call_and_per_batch(server: CollectorServer, path: str, size: int, status: int) -> None:
    message = {"type": "track", "userId": "u", "event": "e", "properties": {"pad": "x" * size}}
    body = {"batch": [message]} if path == "/v1/batch" else message
    response = requests.post(f"{server.url}{path}", json=body, timeout=5)
    assert response.status_code == status
    if status == 400:
        assert response.json()["message"] == "Payload too large"


def test_official_client_never_sends_a_message_over_32_kb(server: CollectorServer) -> None:
    """analytics-python drops an oversized message itself: the emulator's 32 KB limit agrees with it."""
    client = Client("wk_test", host=server.url, sync_mode=True, max_retries=0)
    with pytest.raises(RuntimeError, match="Message exceeds"):
        client.track("user-1", "Huge", {"pad": "x" * 40_000})
    assert inspect(server)["total"] == 0
