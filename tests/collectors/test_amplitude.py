"""Amplitude, driven by the official amplitude-analytics client."""

from __future__ import annotations

import logging
import threading

import pytest
import requests
from amplitude import Amplitude, BaseEvent, Config

from .conftest import CollectorServer, bad_reasons, good_events, inspect


@pytest.mark.parametrize("path", ["/2/httpapi", "/batch"])
def test_official_client_events_are_ingested(server: CollectorServer, path: str) -> None:
    results: list[tuple[str, int, str]] = []
    done = threading.Event()

    def callback(event: BaseEvent, code: int, message: str | None = None) -> None:
        results.append((event.event_type, code, message or ""))
        done.set()

    config = Config(server_url=server.url + path, callback=callback, flush_max_retries=1, use_batch=path == "/batch")
    client = Amplitude("amp_key", configuration=config)
    client.track(BaseEvent("Build Started", user_id="user-1", device_id="dev-1", event_properties={"n": 1}))
    client.flush()
    client.shutdown()

    assert done.wait(5)
    assert [(name, code) for name, code, _ in results] == [("Build Started", 200)]
    (event,) = good_events(server, collector="amplitude")
    assert (event["name"], event["distinct_id"], event["anonymous_id"]) == ("Build Started", "user-1", "dev-1")
    assert event["properties"] == {"n": 1}
    assert event["context"]["api_key"] == "amp_key"
    assert event["context"]["library"].startswith("amplitude-python")


def test_bad_json_and_missing_fields_get_amplitudes_400(server: CollectorServer) -> None:
    response = requests.post(f"{server.url}/2/httpapi", data=b"{", timeout=5)
    assert response.status_code == 400 and response.json()["code"] == 400
    response = requests.post(
        f"{server.url}/2/httpapi", json={"api_key": "k", "events": [{"event_type": "x"}, {"user_id": "u"}]}, timeout=5
    )
    assert response.status_code == 400
    assert response.json()["events_with_missing_fields"] == {"device_id": [0], "event_type": [1]}
    assert len(bad_reasons(server)) == 2
    assert good_events(server) == []


def _tracked(server: CollectorServer, events: list[BaseEvent], **config: object) -> list[tuple[str, int, str]]:
    """Track `events` with the official client and wait for every callback."""
    results: list[tuple[str, int, str]] = []
    lock = threading.Lock()
    all_done = threading.Event()

    def callback(event: BaseEvent, code: int, message: str | None = None) -> None:
        with lock:
            results.append((event.event_type, code, message or ""))
            if len(results) == len(events):
                all_done.set()

    options: dict[str, object] = {"server_url": server.url + "/2/httpapi", "callback": callback,
                                  "flush_max_retries": 3, **config}
    client = Amplitude("amp_key", configuration=Config(**options))  # type: ignore[arg-type]
    for event in events:
        client.track(event)
    client.flush()
    assert all_done.wait(15), results
    client.shutdown()
    return results


def test_a_413_makes_the_official_client_split_its_batch(server: CollectorServer) -> None:
    """Ten events of ~140 KB exceed Amplitude's 1 MB per request: the SDK halves its batch and resends.

    (The SDK cuts strings to 1,024 characters, so the size comes from many properties.)
    """
    properties = {f"p{k}": "x" * 1000 for k in range(140)}
    events = [BaseEvent(f"Big {i}", device_id=f"device-{i}", event_properties=properties) for i in range(10)]
    results = _tracked(server, events, flush_queue_size=10, flush_interval_millis=300)
    assert sorted(code for _, code, _ in results) == [200] * 10
    assert sorted(e["name"] for e in good_events(server)) == sorted(e.event_type for e in events)
    (refused,) = inspect(server, "bad", collector="amplitude")
    assert (refused["request"]["status"], refused["reason"]) == (413, "request exceeds 1 MB")
    assert max(r["request"]["body_bytes"] for r in inspect(server, "good")) < refused["request"]["body_bytes"]


def test_invalid_ids_are_dropped_and_the_rest_resent_by_the_official_client(server: CollectorServer) -> None:
    """A 400 naming invalid id lengths: the SDK gives up on those events and resends the others."""
    events = [BaseEvent("Good", device_id="device-1"), BaseEvent("Short", user_id="abc")]
    results = _tracked(server, events, flush_queue_size=2, flush_interval_millis=300)
    assert sorted((name, code) for name, code, _ in results) == [("Good", 200), ("Short", 400)]
    assert [e["name"] for e in good_events(server)] == ["Good"]
    assert bad_reasons(server, collector="amplitude") == ["events [1]: user_id shorter than 5"]


def test_min_id_length_option_is_honoured(server: CollectorServer) -> None:
    body = {"api_key": "k", "events": [{"event_type": "e", "user_id": "abc"}], "options": {"min_id_length": 3}}
    assert requests.post(f"{server.url}/2/httpapi", json=body, timeout=5).status_code == 200


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        ({"api_key": "not a key!", "events": []}, 400, "Invalid API key: not a key!"),
        ({"events": []}, 400, "Request missing required field"),
        ({"api_key": "k", "events": [{"event_type": "e", "device_id": "device"}] * 2001}, 413, "Payload too large"),
    ],
)
def test_auth_and_limit_errors(server: CollectorServer, body: dict[str, object], status: int, error: str) -> None:
    response = requests.post(f"{server.url}/2/httpapi", json=body, timeout=5)
    assert (response.status_code, response.json()["code"], response.json()["error"]) == (status, status, error)


def test_server_upload_time_is_the_servers_clock(server: CollectorServer) -> None:
    import time

    before = int(time.time() * 1000)
    body = {"api_key": "k", "events": [{"event_type": "e", "device_id": "device-1", "time": 1}]}
    answer = requests.post(f"{server.url}/2/httpapi", json=body, timeout=5).json()
    assert before <= answer["server_upload_time"] <= int(time.time() * 1000)


def test_official_client_logs_an_invalid_api_key(server: CollectorServer, caplog: pytest.LogCaptureFixture) -> None:
    """`Invalid API key:` makes the SDK raise InvalidAPIKeyError inside its worker, which logs it."""
    config = Config(server_url=server.url + "/2/httpapi", flush_queue_size=1, flush_max_retries=1)
    client = Amplitude("not a key!", configuration=config)
    with caplog.at_level(logging.ERROR, logger="amplitude"):
        client.track(BaseEvent("E", device_id="device-1"))
        client.flush()
        client.shutdown()
    assert any(record.getMessage() == "Invalid API Key" for record in caplog.records)
    assert good_events(server) == []
    assert bad_reasons(server, collector="amplitude") == ["invalid api_key"]
