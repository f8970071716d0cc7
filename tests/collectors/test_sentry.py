"""Sentry, driven by the official sentry-sdk (envelopes, brotli or gzip), plus the legacy store endpoint."""

from __future__ import annotations

import base64
import json
import logging
import zlib
from collections.abc import Iterator

import pytest
import requests
import sentry_sdk

from telemetry_audit.collectors.sentry import parse_envelope

from .conftest import CollectorServer, bad_reasons, good_events, inspect


@pytest.fixture
def sentry(server: CollectorServer) -> Iterator[None]:
    yield
    sentry_sdk.get_client().close()
    sentry_sdk.init()  # back to a disabled client: sentry-sdk's client is process-global


@pytest.mark.parametrize("algo", ["br", "gzip"])
def test_official_sdk_envelope_is_accepted(
    server: CollectorServer, sentry: None, algo: str, caplog: pytest.LogCaptureFixture
) -> None:
    sentry_sdk.init(
        dsn=f"http://publickey@127.0.0.1:{server.port}/42",
        default_integrations=False,
        auto_enabling_integrations=False,
        release="cli@1.2.3",
        server_name="build-host",
        _experiments={"transport_compression_algo": algo},
    )
    sentry_sdk.set_user({"id": "user-1"})
    with caplog.at_level(logging.WARNING, logger="sentry_sdk.errors"):
        event_id = sentry_sdk.capture_message("deploy failed")
        sentry_sdk.flush(timeout=5)
    assert caplog.records == []

    (event,) = good_events(server, collector="sentry", event="event")
    assert event["raw"]["event_id"] == event_id
    assert event["distinct_id"] == "user-1"
    assert event["properties"]["message"] == "deploy failed"
    assert event["context"]["release"] == "cli@1.2.3"
    assert event["context"]["server_name"] == "build-host"
    assert event["context"]["project"] == "42"
    assert inspect(server, "good")[0]["request"]["content_encoding"] == algo


def test_legacy_store_with_base64_zlib_body(server: CollectorServer) -> None:
    body = base64.b64encode(zlib.compress(json.dumps({"event_id": "abc", "message": "hi"}).encode()))
    response = requests.post(
        f"{server.url}/api/7/store/", data=body, headers={"X-Sentry-Auth": "Sentry sentry_key=k"}, timeout=5
    )
    assert response.json() == {"id": "abc"}
    assert good_events(server)[0]["properties"]["message"] == "hi"


def test_envelope_items_with_and_without_length() -> None:
    data = b'{"event_id":"e1"}\n{"type":"attachment","length":3}\nab\n\n{"type":"session"}\n{"did":"u"}\n'
    header, items = parse_envelope(data)
    assert header == {"event_id": "e1"}
    assert items == [({"type": "attachment", "length": 3}, b"ab\n"), ({"type": "session"}, b'{"did":"u"}')]


@pytest.mark.parametrize(
    ("body", "headers", "status", "reason"),
    [
        (b'{}\n{"type":"event","length":99}\n{}', {"X-Sentry-Auth": "Sentry sentry_key=k"}, 400, "invalid envelope"),
        (b"{}\n{no json", {"X-Sentry-Auth": "Sentry sentry_key=k"}, 400, "invalid envelope"),
        (b'{}\n{"type":"event"}\n{}', {}, 401, "missing authorization"),
    ],
)
def test_bad_envelopes_get_relays_errors(
    server: CollectorServer, body: bytes, headers: dict[str, str], status: int, reason: str
) -> None:
    response = requests.post(f"{server.url}/api/1/envelope/", data=body, headers=headers, timeout=5)
    assert response.status_code == status
    assert response.json()["detail"].startswith(reason)
    assert bad_reasons(server)[0].startswith(reason)


def test_official_sdk_drops_an_event_over_the_size_limit_on_413(
    server: CollectorServer, sentry: None, caplog: pytest.LogCaptureFixture
) -> None:
    """Relay's 1 MiB event limit: the SDK logs the 413 and records a lost event; the store has the refusal."""
    sentry_sdk.init(dsn=f"http://publickey@127.0.0.1:{server.port}/42", default_integrations=False,
                    auto_enabling_integrations=False, max_value_length=3_000_000, debug=True)
    sentry_sdk.set_extra("log", "x" * 1_500_000)
    with caplog.at_level(logging.ERROR, logger="sentry_sdk.errors"):
        sentry_sdk.capture_message("too big")
        sentry_sdk.flush(timeout=5)
    assert any("HTTP 413: Event dropped" in record.getMessage() for record in caplog.records)
    (bad,) = inspect(server, "bad", collector="sentry")
    assert bad["request"]["status"] == 413 and "exceeded the event size limit" in bad["reason"]
    # The SDK then reports the loss in a client report, the only thing that arrives.
    (report,) = good_events(server)
    assert report["name"] == "client_report"
    assert {"reason": "send_error", "category": "error", "quantity": 1} in report["properties"]["discarded_events"]


def test_envelope_without_a_key_is_401(server: CollectorServer) -> None:
    body = b'{"event_id":"e1"}\n{"type":"event"}\n{"message":"m"}\n'
    response = requests.post(f"{server.url}/api/3/envelope/", data=body, timeout=5)
    assert (response.status_code, response.json()) == (401, {"detail": "missing authorization information"})
    assert bad_reasons(server, collector="sentry") == ["missing authorization information"]


def test_legacy_store_refuses_a_deflate_bomb(server: CollectorServer) -> None:
    body = base64.b64encode(zlib.compress(b"{" + b" " * 50_000_000 + b"}"))
    response = requests.post(f"{server.url}/api/7/store/", data=body,
                             headers={"X-Sentry-Auth": "Sentry sentry_key=k"}, timeout=10)
    assert response.status_code == 413
