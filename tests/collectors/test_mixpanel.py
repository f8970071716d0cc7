"""Mixpanel, driven by the official mixpanel client, plus mixpanel-js style base64 GETs."""

from __future__ import annotations

import base64
import json

import pytest
import requests
from mixpanel import Consumer, Mixpanel

from telemetry_audit.collectors.server import CollectorServer

from .conftest import bad_reasons, good_events


def _client(server: CollectorServer) -> Mixpanel:
    consumer = Consumer(
        events_url=f"{server.url}/track",
        people_url=f"{server.url}/engage",
        groups_url=f"{server.url}/groups",
        import_url=f"{server.url}/import",
        retry_limit=0,
        request_timeout=5,
    )
    return Mixpanel("mp_token", consumer=consumer)


def test_official_client_track_people_and_groups_succeed(server: CollectorServer) -> None:
    client = _client(server)
    # The client raises MixpanelException unless the answer is {"status": 1}.
    client.track("user-1", "Command Run", {"command": "deploy"})
    client.people_set("user-1", {"plan": "free"})
    client.group_set("company", "acme", {"size": 3})

    events = good_events(server, collector="mixpanel")
    assert [(e["name"], e["distinct_id"]) for e in events] == [
        ("Command Run", "user-1"),
        ("$set", "user-1"),
        ("$set", None),
    ]
    assert events[0]["properties"]["command"] == "deploy"
    assert events[0]["context"] == {"endpoint": "track", "token": "mp_token"}
    assert events[0]["timestamp"]
    assert events[2]["context"]["group_key"] == "company"


def test_official_client_import(server: CollectorServer) -> None:
    _client(server).import_data("api-key", "user-1", "Old Event", 1700000000, api_secret="secret")
    (event,) = good_events(server)
    assert (event["name"], event["timestamp"]) == ("Old Event", "2023-11-14T22:13:20.000Z")


def test_base64_get_without_verbose_answers_1(server: CollectorServer) -> None:
    data = base64.b64encode(json.dumps({"event": "e", "properties": {"token": "t", "distinct_id": "d"}}).encode())
    response = requests.get(f"{server.url}/track/", params={"data": data.decode(), "ip": "1"}, timeout=5)
    assert (response.status_code, response.text) == (200, "1")
    assert [e["name"] for e in good_events(server)] == ["e"]


@pytest.mark.parametrize(
    ("params", "status", "text"),
    [
        ({"data": "!!!not base64"}, 200, "0"),
        # Verbose errors are HTTP 200 too; the status field says it.
        ({"data": "!!!not base64", "verbose": "1"}, 200, None),
        ({"data": json.dumps({"event": "e", "properties": {}}), "verbose": "1"}, 200, None),
    ],
)
def test_bad_requests_get_mixpanels_errors(
    server: CollectorServer, params: dict[str, str], status: int, text: str | None
) -> None:
    response = requests.post(f"{server.url}/track", data=params, timeout=5)
    assert response.status_code == status
    if text is not None:
        assert response.text == text
    else:
        assert response.json()["status"] == 0 and response.json()["error"]
    assert len(bad_reasons(server)) == 1
    assert good_events(server) == []
