"""GA4 Measurement Protocol and Universal Analytics (no official Python SDK: documented payloads over requests)."""

from __future__ import annotations

import pytest
import requests

from telemetry_audit.collectors.base import TRANSPARENT_GIF

from .conftest import CollectorServer, bad_reasons, good_events

GA4 = {"measurement_id": "G-TEST123", "api_secret": "s3cret"}


def test_ga4_collect_answers_204_and_normalises(server: CollectorServer) -> None:
    body = {
        "client_id": "123.456",
        "user_id": "user-1",
        "timestamp_micros": 1700000000000000,
        "events": [{"name": "cli_command", "params": {"command": "deploy", "engagement_time_msec": 1}}],
    }
    response = requests.post(f"{server.url}/mp/collect", params=GA4, json=body, timeout=5)
    assert (response.status_code, response.content) == (204, b"")
    (event,) = good_events(server, collector="ga4")
    assert (event["name"], event["distinct_id"], event["anonymous_id"]) == ("cli_command", "user-1", "123.456")
    assert event["timestamp"] == "2023-11-14T22:13:20.000Z"
    assert event["context"]["measurement_id"] == "G-TEST123"
    assert "api_secret" not in event["context"]


def test_ga4_invalid_request_is_silently_dropped_but_recorded(server: CollectorServer) -> None:
    response = requests.post(
        f"{server.url}/mp/collect", params=GA4, json={"events": [{"name": "firebase_x"}]}, timeout=5
    )
    assert response.status_code == 204
    assert good_events(server) == []
    assert bad_reasons(server) == [
        "client_id: client_id or app_instance_id is required.; events[0].name: Event name 'firebase_x' is reserved."
    ]


def test_ga4_debug_endpoint_reports_validation_messages(server: CollectorServer) -> None:
    response = requests.post(f"{server.url}/debug/mp/collect", params=GA4, data=b"{", timeout=5)
    assert response.status_code == 200
    assert response.json()["validationMessages"][0]["description"].startswith("Unable to parse")


def test_universal_analytics_collect_and_batch(server: CollectorServer) -> None:
    hit = "v=1&tid=UA-1-1&cid=555&t=event&ec=cli&ea=deploy"
    response = requests.post(f"{server.url}/collect", data=hit, timeout=5)
    assert (response.status_code, response.content) == (200, TRANSPARENT_GIF)
    response = requests.post(f"{server.url}/batch", data=f"{hit}\nv=1&tid=UA-1-1&cid=555&t=pageview&dp=%2Fx", timeout=5)
    assert response.status_code == 200
    events = good_events(server, collector="universal-analytics")
    assert [(e["name"], e["anonymous_id"]) for e in events] == [
        ("deploy", "555"),
        ("deploy", "555"),
        ("pageview", "555"),
    ]


def test_universal_analytics_missing_fields_are_bad(server: CollectorServer) -> None:
    response = requests.get(f"{server.url}/collect", params={"v": "1", "t": "event"}, timeout=5)
    assert response.status_code == 200
    assert bad_reasons(server) == ["hit 0: missing tid, cid or uid"]


@pytest.mark.parametrize(
    ("body", "field", "code"),
    [
        ({"client_id": "c", "events": [{"name": "_x"}]}, "events[0].name", "NAME_RESERVED"),
        ({"client_id": "c", "events": [{"name": "9bad"}]}, "events[0].name", "NAME_INVALID"),
        ({"client_id": "c", "events": [{}]}, "events[0].name", "VALUE_REQUIRED"),
        ({"events": [{"name": "ok"}]}, "client_id", "VALUE_REQUIRED"),
        ({"client_id": "c", "events": [{"name": "e"}] * 26}, "events", "EXCEEDED_MAX_ENTITIES"),
        ({"client_id": "c", "events": [{"name": "e", "params": {"p": "x" * 101}}]}, "events[0].params.p",
         "VALUE_OUT_OF_BOUNDS"),
        ({"client_id": "c", "events": [{"name": "e", "params": {f"p{i}": 1 for i in range(26)}}]},
         "events[0].params", "EXCEEDED_MAX_ENTITIES"),
    ],
)
def test_ga4_debug_validation_codes(server: CollectorServer, body: dict[str, object], field: str, code: str) -> None:
    response = requests.post(f"{server.url}/debug/mp/collect", params=GA4, json=body, timeout=5)
    messages = response.json()["validationMessages"]
    assert {"fieldPath": field, "validationCode": code} in [
        {"fieldPath": m["fieldPath"], "validationCode": m["validationCode"]} for m in messages
    ]


def test_gtag_g_collect_events_per_body_line(server: CollectorServer) -> None:
    """gtag.js: shared parameters in the query, one event per line; answered 204 like Google."""
    query = {"v": "2", "tid": "G-TEST123", "cid": "123.456", "uid": "user-1", "dl": "https://app/x"}
    body = "en=page_view&ep.page=home\nen=cli_command&ep.command=deploy&epn.duration=1.5&up.plan=pro"
    response = requests.post(f"{server.url}/g/collect", params=query, data=body, timeout=5)
    assert (response.status_code, response.content) == (204, b"")
    events = good_events(server, collector="ga4")
    assert [(e["name"], e["anonymous_id"], e["distinct_id"]) for e in events] == [
        ("page_view", "123.456", "user-1"), ("cli_command", "123.456", "user-1"),
    ]
    assert events[1]["properties"] == {"command": "deploy", "duration": 1.5}
    assert events[1]["context"]["user_properties"] == {"plan": "pro"}


def test_gtag_hit_without_measurement_id_is_dropped_and_recorded(server: CollectorServer) -> None:
    response = requests.get(f"{server.url}/g/collect", params={"v": "2", "en": "x", "cid": "1"}, timeout=5)
    assert response.status_code == 204
    assert bad_reasons(server, collector="ga4") == ["hit 0: missing tid"]
