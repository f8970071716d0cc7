"""Amplitude, driven by the official amplitude-analytics client."""

from __future__ import annotations

import threading

import pytest
import requests
from amplitude import Amplitude, BaseEvent, Config

from telemetry_audit.collectors.server import CollectorServer

from .conftest import bad_reasons, good_events


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
