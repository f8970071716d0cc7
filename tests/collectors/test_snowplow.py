"""Snowplow, driven by the official snowplow-tracker (POST tp2 and GET pixel emitters)."""

from __future__ import annotations

import pytest
import requests
from snowplow_tracker import Emitter, PageView, SelfDescribing, SelfDescribingJson, StructuredEvent, Subject, Tracker

from telemetry_audit.collectors.base import TRANSPARENT_GIF

from .conftest import CollectorServer, bad_reasons, good_events

SCHEMA = "iglu:com.example/command_run/jsonschema/1-0-0"


@pytest.mark.parametrize("method", ["post", "get"])
def test_official_tracker_events_are_accepted(server: CollectorServer, method: str) -> None:
    sent: list[int] = []
    failed: list[object] = []
    emitter = Emitter(
        "127.0.0.1",
        protocol="http",
        port=server.port,
        method=method,
        batch_size=1,
        on_success=lambda payloads: sent.append(len(payloads)),
        on_failure=lambda count, payloads: failed.append(payloads),
        max_retry_delay_seconds=1,
    )
    subject = Subject().set_user_id("user-1").set_domain_user_id("duid-1")
    tracker = Tracker("cli", emitter, subject=subject, app_id="my-cli")
    context = [SelfDescribingJson("iglu:com.example/env/jsonschema/1-0-0", {"ci": True})]
    tracker.track(SelfDescribing(SelfDescribingJson(SCHEMA, {"command": "deploy"}), context=context))
    tracker.track(StructuredEvent("cli", "start", label="v1"))
    tracker.track(PageView("https://example.com/docs"))
    tracker.flush()

    assert failed == []
    assert sum(sent) == 3
    events = good_events(server, collector="snowplow")
    assert [e["name"] for e in events] == ["command_run", "start", "page_view"]
    first = events[0]
    assert (first["distinct_id"], first["anonymous_id"]) == ("user-1", "duid-1")
    assert first["properties"] == {"command": "deploy"}
    assert first["context"]["event_schema"] == SCHEMA
    assert first["context"]["contexts"] == [{"schema": "iglu:com.example/env/jsonschema/1-0-0", "data": {"ci": True}}]
    assert first["context"]["aid"] == "my-cli"
    assert first["timestamp"]
    assert events[1]["properties"] == {"category": "cli", "action": "start", "label": "v1"}


def test_pixel_answers_a_gif(server: CollectorServer) -> None:
    response = requests.get(f"{server.url}/i", params={"e": "pv", "tv": "js-3", "url": "https://x"}, timeout=5)
    assert (response.status_code, response.headers["Content-Type"], response.content) == (
        200,
        "image/gif",
        TRANSPARENT_GIF,
    )


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"not json", "invalid JSON"),
        (b'{"schema": "iglu:com.acme/other/jsonschema/1-0-0", "data": []}', "payload is not"),
        (
            b'{"schema": "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4", "data": [{"e": "zz"}]}',
            "data[0]: unknown or missing event type",
        ),
    ],
)
def test_bad_payloads_are_accepted_but_recorded_bad(server: CollectorServer, body: bytes, reason: str) -> None:
    # The real collector accepts everything; enrichment turns it into a bad row.
    response = requests.post(f"{server.url}/com.snowplowanalytics.snowplow/tp2", data=body, timeout=5)
    assert response.status_code == 200
    assert bad_reasons(server)[0].startswith(reason)


def test_get_on_tp2_is_a_pixel_with_query_parameters(server: CollectorServer) -> None:
    params = {"e": "se", "tv": "curl", "se_ca": "cli", "se_ac": "deploy"}
    response = requests.get(f"{server.url}/com.snowplowanalytics.snowplow/tp2", params=params, timeout=5)
    assert (response.status_code, response.content) == (200, TRANSPARENT_GIF)
    assert [e["name"] for e in good_events(server, collector="snowplow")] == ["deploy"]


def test_iglu_adapter_makes_a_self_describing_event(server: CollectorServer) -> None:
    params = {"schema": "iglu:com.acme/cli_run/jsonschema/1-0-0", "command": "deploy"}
    response = requests.get(f"{server.url}/com.snowplowanalytics.iglu/v1", params=params, timeout=5)
    assert response.content == TRANSPARENT_GIF
    (event,) = good_events(server)
    assert (event["name"], event["properties"]) == ("cli_run", {"command": "deploy"})


def test_unknown_vendor_pixel_is_answered_and_recorded_bad(server: CollectorServer) -> None:
    response = requests.get(f"{server.url}/com.acme/v1", params={"a": "1"}, timeout=5)
    assert (response.status_code, response.content) == (200, TRANSPARENT_GIF)
    assert bad_reasons(server, collector="snowplow") == ["no adapter for com.acme/v1 in this emulator"]


def test_oversized_tp2_payload_is_a_size_violation_still_answered_200(server: CollectorServer) -> None:
    body = {"schema": "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4",
            "data": [{"e": "pv", "tv": "t", "url": "x" * 1_100_000}]}
    response = requests.post(f"{server.url}/com.snowplowanalytics.snowplow/tp2", json=body, timeout=5)
    assert response.status_code == 200
    assert bad_reasons(server)[0].startswith("size violation")
