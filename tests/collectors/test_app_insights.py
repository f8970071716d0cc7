"""Azure Application Insights ingestion (documented envelopes over requests: no maintained Python SDK posts them)."""

from __future__ import annotations

import gzip
import json

import requests

from .conftest import CollectorServer, bad_reasons, good_events, inspect


def _envelope(name: str = "CommandRun", **extra: object) -> dict[str, object]:
    return {
        "name": "Microsoft.ApplicationInsights.00000000000000000000000000000000.Event",
        "time": "2026-11-22T08:00:00.000Z",
        "iKey": "00000000-0000-0000-0000-000000000000",
        "tags": {"ai.user.id": "anon-1", "ai.cloud.roleInstance": "build-host"},
        "data": {"baseType": "EventData", "baseData": {"ver": 2, "name": name, "properties": {"command": "deploy"}}},
        **extra,
    }


def test_gzipped_ndjson_is_accepted(server: CollectorServer) -> None:
    body = gzip.compress(b"\n".join(json.dumps(_envelope(n)).encode() for n in ("A", "B")))
    response = requests.post(
        f"{server.url}/v2.1/track",
        data=body,
        headers={"Content-Type": "application/x-json-stream", "Content-Encoding": "gzip"},
        timeout=5,
    )
    assert (response.status_code, response.json()) == (200, {"itemsReceived": 2, "itemsAccepted": 2, "errors": []})
    events = good_events(server, collector="app-insights")
    assert [(e["name"], e["anonymous_id"]) for e in events] == [("A", "anon-1"), ("B", "anon-1")]
    assert events[0]["properties"] == {"command": "deploy"}
    assert events[0]["context"]["tags"]["ai.cloud.roleInstance"] == "build-host"


def test_partial_acceptance_gets_206(server: CollectorServer) -> None:
    response = requests.post(f"{server.url}/v2/track", json=[_envelope(), {"name": "x"}], timeout=5)
    assert response.status_code == 206
    assert response.json()["itemsAccepted"] == 1
    assert response.json()["errors"][0]["index"] == 1
    assert len(good_events(server)) == 1
    assert bad_reasons(server)[0].startswith("item 1: Field 'time'")


def test_unreadable_body_gets_400(server: CollectorServer) -> None:
    response = requests.post(f"{server.url}/v2/track", data=b"[{", timeout=5)
    assert response.status_code == 400
    assert response.json()["itemsAccepted"] == 0
    assert bad_reasons(server)[0].startswith("Invalid payload")


def test_items_with_an_invalid_instrumentation_key_are_refused_with_206(server: CollectorServer) -> None:
    good = {"name": "Microsoft.ApplicationInsights.Event", "time": "2026-01-01T00:00:00Z",
            "iKey": "00000000-0000-0000-0000-000000000000",
            "data": {"baseType": "EventData", "baseData": {"name": "cli.run"}}}
    bad = {**good, "iKey": "not-a-guid"}
    response = requests.post(f"{server.url}/v2/track", json=[good, bad], timeout=5)
    assert response.status_code == 206
    assert response.json() == {"itemsReceived": 2, "itemsAccepted": 1,
                               "errors": [{"index": 1, "statusCode": 400, "message": "Invalid instrumentation key"}]}
    assert [e["name"] for e in good_events(server)] == ["cli.run"]
    (refused,) = inspect(server, "bad", collector="app-insights")
    assert refused["event"]["raw"]["iKey"] == "not-a-guid"
