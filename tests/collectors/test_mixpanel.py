"""Mixpanel, driven by the official mixpanel client, plus mixpanel-js style base64 GETs."""

from __future__ import annotations

import base64
import json

import pytest
import requests
from mixpanel import BufferedConsumer, Consumer, Mixpanel, MixpanelException

from .conftest import CollectorServer, bad_reasons, good_events, inspect


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


def test_track_accepts_the_valid_events_of_a_batch(server: CollectorServer) -> None:
    batch = [{"event": "ok", "properties": {"token": "t", "distinct_id": "d"}}, {"event": "no-token", "properties": {}}]
    response = requests.post(f"{server.url}/track", data={"data": json.dumps(batch)}, timeout=5)
    assert (response.status_code, response.text) == (200, "1")
    assert [e["name"] for e in good_events(server)] == ["ok"]
    (bad,) = inspect(server, "bad", collector="mixpanel")
    assert (bad["event"]["name"], bad["reason"]) == ("no-token", "[1] token, missing or empty")


def test_official_client_batch_with_an_invalid_event_still_succeeds(server: CollectorServer) -> None:
    """BufferedConsumer sends one batch; the valid events are kept and the client sees status 1."""
    consumer = BufferedConsumer(max_size=10, events_url=f"{server.url}/track", retry_limit=0, request_timeout=5)
    consumer.send("events", json.dumps({"event": "ok", "properties": {"token": "t", "distinct_id": "d"}}))
    consumer.send("events", json.dumps({"event": "", "properties": {"token": "t"}}))
    consumer.flush()
    assert [e["name"] for e in good_events(server)] == ["ok"]
    assert bad_reasons(server) == ["[1] 'event' must be a non-empty string"]


def test_official_client_import_without_credentials_gets_401(server: CollectorServer) -> None:
    consumer = Consumer(import_url=f"{server.url}/import", retry_limit=0, request_timeout=5)
    with pytest.raises(MixpanelException, match="Mixpanel error: Unauthorized"):
        consumer.send("imports", json.dumps({"event": "e", "properties": {"time": 1, "distinct_id": "d"}}))
    (bad,) = inspect(server, "bad", collector="mixpanel")
    assert bad["request"]["status"] == 401


def test_official_client_sees_a_413_for_an_oversized_track(server: CollectorServer) -> None:
    with pytest.raises(MixpanelException, match="exceeds"):
        _client(server).track("user-1", "Huge", {"pad": "x" * 1_100_000})
    assert inspect(server, "bad")[0]["request"]["status"] == 413


def test_import_partial_failure_reports_failed_records(server: CollectorServer) -> None:
    records = [{"event": "ok", "properties": {"time": 1, "distinct_id": "d"}}, {"event": "late", "properties": {}}]
    response = requests.post(f"{server.url}/import", json=records, auth=("secret", ""), timeout=5)
    assert response.status_code == 400
    answer = response.json()
    assert (answer["num_records_imported"], answer["status"]) == (1, "Bad Request")
    assert answer["failed_records"] == [
        {"index": 1, "field": "properties.time", "message": "'properties.time' is required"}
    ]
    assert [e["name"] for e in good_events(server)] == ["ok"]


def test_import_success_is_status_ok(server: CollectorServer) -> None:
    records = [{"event": "ok", "properties": {"time": 1, "distinct_id": "d"}}]
    response = requests.post(f"{server.url}/import", json=records, auth=("secret", ""), timeout=5)
    assert response.json() == {"code": 200, "num_records_imported": 1, "status": "OK"}


def test_flags_answer_no_flags_in_the_shapes_the_official_client_parses(server: CollectorServer) -> None:
    from mixpanel.flags.types import ExperimentationFlags, RemoteFlagsResponse

    # By path alone `/flags` is PostHog's: the SDK's own host says Mixpanel.
    host = {"Host": "api.mixpanel.com"}
    remote = requests.get(f"{server.url}/flags", params={"token": "t", "context": "{}"}, headers=host, timeout=5)
    assert RemoteFlagsResponse.from_dict(remote.json()).flags == {}
    local = requests.get(f"{server.url}/flags/definitions", params={"token": "t"}, headers=host, timeout=5)
    assert ExperimentationFlags.from_dict(local.json()).flags == []
    assert requests.get(f"{server.url}/decide", headers=host, timeout=5).json()["flags"] == {}
    assert [e["name"] for e in good_events(server, collector="mixpanel")] == ["$flags", "$flags_definitions",
                                                                              "$decide"]
